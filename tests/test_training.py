import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from engine.cli import main
from engine.loops import evaluate, train_one_epoch
from engine.optim import lr_lambda
from engine.streams import MOTION, SPATIAL
from network.heads import SegmentConsensus
from network.recognizer import Recognizer, build_recognizer
from tests.helpers import SMALL_ARCH, extract_real_clips, single_thread
from utils.errors import UserError, run_cli

ROOT = Path(__file__).resolve().parents[1]

# Small and fast: SMALL_ARCH on 32 px crops, 2 segments, 3 test frames, no worker processes.
FAST = [
    "--arch", SMALL_ARCH, "--pretrained", "none", "--crop-size", "32", "--num-segments", "2",
    "--test-snippets", "3", "--batch-size", "3", "--workers", "0", "--lr", "0.01",
    "--lr-steps", "1", "--seed", "3", "--accum-steps", "2",
]  # fmt: skip


one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def _weights(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- engine on generated data ----------------------------------------------------------------


class Blobs(Dataset):
    """Videos of K snippets whose mean brightness says the class.

    Items are [K, C, H, W] (a training sample) or, with ``test``, [1, K, C, H, W] (one crop).
    """

    def __init__(self, n=12, frames=2, channels=3, size=16, classes=3, seed=0, test=False):
        g = torch.Generator().manual_seed(seed)
        self.labels = [i % classes for i in range(n)]
        self.items = [
            torch.randn(frames, channels, size, size, generator=g) * 0.5 + (label - 1)
            for label in self.labels
        ]
        self.test = test

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return (self.items[i][None] if self.test else self.items[i]), self.labels[i]


class SpyBackbone(nn.Module):
    """The mean of each image as its features, recording the batch shapes it sees."""

    def __init__(self):
        super().__init__()
        self.shapes = []

    def forward(self, x):
        self.shapes.append(tuple(x.shape))
        return x.mean(dim=(2, 3))


def Spy(channels=3, classes=3):  # noqa: N802
    """A recognizer whose backbone is SpyBackbone: a linear model on the images' means."""
    config = dict(arch="spy", num_classes=classes, in_channels=channels, dropout=0.0)
    config.update(partial_bn=False, consensus="avg")
    head = SegmentConsensus(channels, classes, 0.0)
    return Recognizer(SpyBackbone(), head, [0.0] * channels, [1.0] * channels, config)


def _sgd(model, lr=0.05):
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: 1.0)


class Colours(Dataset):
    """uint8 videos whose class is the one bright colour channel: trivially learnt."""

    def __init__(self, n=12, frames=2, size=32, classes=3, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.labels = [i % classes for i in range(n)]
        self.items = []
        for label in self.labels:
            x = torch.full((frames, 3, size, size), 40.0)
            x[:, label] = 200.0
            self.items.append((x + torch.randint(-20, 21, x.shape, generator=g)).to(torch.uint8))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i], self.labels[i]


def test_a_few_training_steps_lower_the_loss():
    """Whole-batch steps on an obvious task: a correct trainer ends far below the margin (about
    0.001 after 8 steps from ln 3), so another CPU's rounding cannot make it fail."""
    torch.manual_seed(0)
    model = build_recognizer("resnet18", num_classes=3, dropout=0.0, partial_bn=False)
    loader = DataLoader(Colours(), batch_size=12, shuffle=True)
    optimizer, scheduler = _sgd(model, lr=0.01)
    cpu = torch.device("cpu")
    losses = [
        train_one_epoch(model, nn.CrossEntropyLoss(), optimizer, scheduler, loader, cpu, e)["loss"]
        for e in range(1, 9)
    ]
    assert losses[0] == pytest.approx(np.log(3), abs=0.05)  # TSN's tiny classifier init
    assert losses[-1] < 0.25 * losses[0], losses


def _one_epoch(data, batch: int, accum: int) -> tuple[torch.Tensor, int]:
    """The classifier weights after one epoch of Spy at lr 0.5 from seed 0, and its steps."""
    torch.manual_seed(0)
    model = Spy()
    optimizer, scheduler = _sgd(model, lr=0.5)
    train_one_epoch(model, nn.CrossEntropyLoss(), optimizer, scheduler,
                    DataLoader(data, batch_size=batch), torch.device("cpu"), 1,
                    accum_steps=accum)  # fmt: skip
    return model.head.fc.weight.detach().clone(), scheduler.last_epoch


def test_accumulated_steps_equal_one_step_on_the_whole_batch():
    """2 batches of 2 accumulated = 1 batch of 4; the schedule counts optimizer steps."""
    data = Blobs(n=8, frames=2)
    (whole, steps), (accumulated, accumulated_steps) = (
        _one_epoch(data, 4, 1),
        _one_epoch(data, 2, 2),
    )
    assert steps == accumulated_steps == 2
    torch.testing.assert_close(accumulated, whole, rtol=1e-5, atol=1e-6)
    # A last short group still steps: 3 batches with accum 2 are 2 optimizer steps.
    cpu = torch.device("cpu")
    model = Spy()
    optimizer, scheduler = _sgd(model)
    loader = DataLoader(Blobs(n=6), batch_size=2)
    train_one_epoch(
        model, nn.CrossEntropyLoss(), optimizer, scheduler, loader, cpu, 1, accum_steps=2
    )
    assert scheduler.last_epoch == 2


def test_every_video_weighs_the_same_in_a_last_short_group():
    """7 videos in batches of 3, 3 and 1 accumulated into one step: the step is the mean over
    the 7 videos, the step of one batch of 7 (the lone video does not weigh 3 times more)."""
    data = Blobs(n=7, frames=2)
    (whole, _), (accumulated, _) = _one_epoch(data, 7, 1), _one_epoch(data, 3, 3)
    torch.manual_seed(0)
    assert not torch.allclose(whole, Spy().head.fc.weight, atol=1e-3)  # it moved
    torch.testing.assert_close(accumulated, whole, rtol=1e-5, atol=1e-6)


class SyncCount(torch.overrides.TorchFunctionMode):
    """Counts the calls that make the host wait for a CUDA device (a copy to the host)."""

    SYNCS = {"item", "tolist", "cpu", "numpy", "__int__", "__float__", "__bool__", "__index__"}

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, "__name__", "") in self.SYNCS:
            self.calls.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_training_syncs_with_the_host_once_per_optimizer_step():
    model = Spy()
    optimizer, scheduler = _sgd(model)
    loader = DataLoader(Blobs(n=10), batch_size=2)  # 5 batches, accumulated 2 by 2: 3 steps
    with SyncCount() as counted:
        train_one_epoch(model, nn.CrossEntropyLoss(), optimizer, scheduler, loader,
                        torch.device("cpu"), 1, accum_steps=2)  # fmt: skip
    assert scheduler.last_epoch == 3
    # The DataLoader draws its workers' base seed once per epoch, from a CPU generator.
    assert counted.calls == ["item"] + ["tolist"] * 3, counted.calls


def test_segments_go_through_in_one_pass_and_are_averaged_before_the_loss():
    torch.manual_seed(0)
    data = Blobs(n=4, frames=3)
    model = Spy()
    expected = nn.functional.cross_entropy(
        torch.stack([model.head.fc(x.mean(dim=(2, 3))).mean(0) for x in data.items]),
        torch.tensor(data.labels),
    ).item()
    optimizer, scheduler = _sgd(model, lr=0.0)
    loader = DataLoader(data, batch_size=4)
    stats = train_one_epoch(
        model, nn.CrossEntropyLoss(), optimizer, scheduler, loader, torch.device("cpu"), 1
    )
    assert model.backbone.shapes == [(12, 3, 16, 16)]  # [B*K, C, H, W]: one pass
    assert stats["loss"] == pytest.approx(expected, rel=1e-6)


def test_evaluate_scores_are_mean_logits_or_mean_softmax_in_any_chunking():
    data = Blobs(n=5, frames=7, test=True)
    model = Spy()
    loader = DataLoader(data, batch_size=1)
    cpu = torch.device("cpu")
    with torch.no_grad():
        logits = [model.head.fc(x.mean(dim=(2, 3))) for x in data.items]  # per frame
    scores, metrics = evaluate(model, loader, cpu)
    assert scores.dtype == np.float32 and scores.shape == (5, 3)
    np.testing.assert_allclose(scores, torch.stack([x.mean(0) for x in logits]), rtol=1e-6)
    chunked, _ = evaluate(model, loader, cpu, chunk=3)
    np.testing.assert_allclose(chunked, scores, rtol=1e-6, atol=1e-7)
    soft, _ = evaluate(model, loader, cpu, softmax_average=True)
    np.testing.assert_allclose(soft, torch.stack([x.softmax(1).mean(0) for x in logits]), rtol=1e-6)
    top1 = 100.0 * float(np.mean(scores.argmax(1) == np.array(data.labels)))
    assert metrics["top1"] == pytest.approx(top1)
    assert metrics["videos"] == 5


def test_non_finite_loss_stops_training_with_a_clear_error():
    model = Spy()
    with torch.no_grad():
        model.head.fc.bias.fill_(float("nan"))
    optimizer, scheduler = _sgd(model)
    before = model.head.fc.weight.detach().clone()
    loader = DataLoader(Blobs(n=4), batch_size=2)
    with pytest.raises(UserError, match=r"epoch 7, step 1.*lower --lr"):
        train_one_epoch(
            model, nn.CrossEntropyLoss(), optimizer, scheduler, loader, torch.device("cpu"), 7
        )
    assert torch.equal(model.head.fc.weight, before)


def _factors(**options):
    defaults = dict(epochs=4, lr_schedule="step", lr_steps=[2, 3], lr_gamma=0.1, warmup_epochs=0)
    factor = lr_lambda(argparse.Namespace(**{**defaults, **options}), 10)
    return [factor(it) for it in range(40)]


def test_learning_rate_schedules():
    step = _factors()
    assert step[:20] == [1.0] * 20 and step[20:30] == pytest.approx([0.1] * 10)
    assert step[30:] == pytest.approx([0.01] * 10)
    cosine = _factors(lr_schedule="cosine")
    assert cosine[0] == 1.0 and cosine[20] == pytest.approx(0.5) and cosine[39] < 0.01
    assert all(a > b for a, b in zip(cosine, cosine[1:], strict=False))
    warm = _factors(lr_schedule="cosine", warmup_epochs=1)
    assert warm[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert warm[10] == 1.0 and warm[25] == pytest.approx(0.5)


# --- the command line on the tiny frame dataset ------------------------------------------------


def _run(stream, frame_root, record_dir, *extra):
    return main(
        stream, ["--data-root", str(frame_root), "--record-dir", str(record_dir)] + FAST + [*extra]
    )


@pytest.fixture(scope="module")
def straight(frame_root, tmp_path_factory):
    """An uninterrupted 2-epoch spatial run."""
    record = tmp_path_factory.mktemp("straight")
    _run(SPATIAL, frame_root, record, "--epochs", "2")
    return record


def test_training_writes_checkpoint_records_and_scores(straight):
    ckpt = torch.load(straight / "checkpoint.pth.tar", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 2 and ckpt["stream"] == "spatial" and ckpt["arch"] == SMALL_ARCH
    assert ckpt["classes"] == ["Class0", "Class1", "Class2"] and ckpt["in_channels"] == 3
    assert ckpt["args"]["lr"] == 0.01 and ckpt["args"]["epochs"] == 2
    lines = (straight / "train.csv").read_text().splitlines()
    assert lines[0] == "epoch,loss,top1,top5,lr,seconds"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]
    assert [float(line.split(",")[4]) for line in lines[1:]] == pytest.approx([0.01, 0.001])
    test_lines = (straight / "test.csv").read_text().splitlines()
    assert len(test_lines) == 2 and test_lines[1].startswith("2,")  # the last epoch only
    assert list(straight.glob("events.out.tfevents.*"))
    with np.load(straight / "video_scores.npz") as f:
        assert f["scores"].dtype == np.float32 and f["scores"].shape == (6, 3)
        assert list(f["classes"]) == ["Class0", "Class1", "Class2"]
        assert len(set(f["videos"])) == 6 and f["labels"].tolist() == [0, 0, 1, 1, 2, 2]
        assert (str(f["stream"]), int(f["split"]), int(f["epoch"])) == ("spatial", 1, 2)
    assert not list(straight.glob(".*.tmp"))
    options = json.loads((straight / "args.json").read_text())  # beside the checkpoint
    assert options["epochs"] == 2 and options["accum_steps"] == 2 and options["arch"] == SMALL_ARCH
    assert (straight / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resuming_a_finished_run_says_so_and_writes_nothing(straight, tmp_path, capsys):
    record = tmp_path / "record"
    shutil.copytree(straight, record)
    ckpt = record / "checkpoint.pth.tar"
    before = {p.name: p.read_bytes() for p in record.iterdir() if p.is_file()}
    argv = ["--resume", str(ckpt), "--workers", "0", "--record-dir", str(record)]
    assert main(SPATIAL, argv) == 0
    printed = capsys.readouterr().out
    assert "is a finished run: 2 epochs trained" in printed and "epochs 3..2" not in printed
    assert f"--resume {ckpt} --epochs N (N > 2)" in printed
    assert {p.name: p.read_bytes() for p in record.iterdir() if p.is_file()} == before

    # Killed during its final test: the checkpoint of epoch 2 is there, its scores are not.
    (record / "video_scores.npz").unlink()
    main(SPATIAL, argv)
    assert "testing only" in capsys.readouterr().out
    with np.load(record / "video_scores.npz") as a, np.load(straight / "video_scores.npz") as b:
        assert int(a["epoch"]) == 2
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-5, atol=1e-5)
    assert torch.equal(torch.load(ckpt, weights_only=True)["model"]["head.fc.weight"],
                       _weights(straight / "checkpoint.pth.tar")["head.fc.weight"])  # fmt: skip

    curves = (record / "curves.png").read_bytes()
    main(SPATIAL, [*argv, "--epochs", "3"])  # training longer, as the message says
    assert torch.load(ckpt, weights_only=True)["epoch"] == 3
    assert (record / "curves.png").read_bytes() != curves  # rewritten with epoch 3


def test_curves_plot_each_phase_of_the_records(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from utils.reports import plot_curves

    (tmp_path / "train.csv").write_text("epoch,loss,top1,top5,lr,seconds\n1,2.0,10,50,0.1,3\n"
                                        "2,1.5,40,80,0.1,3\n")  # fmt: skip
    (tmp_path / "test.csv").write_text(
        "epoch,loss,top1,top5,mean_class,seconds\n2,1.7,35,70,30,1\n"
    )
    drawn = []
    save = Figure.savefig
    monkeypatch.setattr(
        Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))
    )
    path = plot_curves(tmp_path, tmp_path / "curves.png", "spatial")
    assert path.read_bytes()[:4] == b"\x89PNG"
    loss, top1 = drawn[0].axes
    assert [line.get_label() for line in loss.lines] == ["train", "test"]
    assert list(top1.lines[0].get_ydata()) == [10, 40] and list(top1.lines[1].get_xdata()) == [2]


def test_evaluate_leaves_checkpoint_and_run_results_unchanged_and_names_its_scores(
    straight, tmp_path, capsys
):
    record = tmp_path / "record"
    shutil.copytree(straight, record)
    ckpt = record / "checkpoint.pth.tar"
    before = {p.name: p.read_bytes() for p in record.iterdir() if p.is_file()}
    argv = ["--evaluate", "--resume", str(ckpt), "--workers", "0", "--record-dir", str(record)]
    main(SPATIAL, argv)
    for name, content in before.items():  # the training run's scores and reports are kept
        assert (record / name).read_bytes() == content, name
    out = record / "eval_checkpoint_e2_n3_scores.npz"
    with np.load(out) as a, np.load(straight / "video_scores.npz") as b:
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-5, atol=1e-5)
        assert list(a["videos"]) == list(b["videos"]) and int(a["epoch"]) == 2
    assert (record / "eval_checkpoint_e2_n3_per_class_accuracy.csv").is_file()
    printed = capsys.readouterr().out
    assert str(out) in printed and "eval_checkpoint_e2_n3_confusion_matrix.png" in printed
    # Test options are in the name (FAST tests 3 frames, not 19); --scores-out puts it anywhere.
    main(SPATIAL, [*argv, "--ten-crop", "--softmax-average", "--test-snippets", "2"])
    assert (record / "eval_checkpoint_e2_tencrop_softmax_n2_scores.npz").is_file()
    with open(record / "eval.csv", newline="") as f:  # one row per evaluation, appended
        rows = list(csv.DictReader(f))
    assert [(r["epoch"], r["test"]) for r in rows] == [
        ("2", "3 snippets, centre crop"),
        ("2", "2 snippets, 10 crops"),
    ]
    assert rows[1]["scores"].endswith("eval_checkpoint_e2_tencrop_softmax_n2_scores.npz")
    main(SPATIAL, [*argv, "--scores-out", str(tmp_path / "mine.npz")])
    assert (tmp_path / "mine.npz").is_file() and (tmp_path / "mine_misclassified.csv").is_file()


def test_resume_applies_the_new_lr_to_every_group_with_its_multiplier(straight, tmp_path):
    shutil.copy(straight / "checkpoint.pth.tar", tmp_path / "checkpoint.pth.tar")
    argv = ["--resume", str(tmp_path / "checkpoint.pth.tar"), "--record-dir", str(tmp_path)]
    main(SPATIAL, [*argv, "--epochs", "3", "--lr", "0.1", "--workers", "0"])
    groups = torch.load(tmp_path / "checkpoint.pth.tar", weights_only=True)["optimizer"]
    by_name = {g["name"]: g for g in groups["param_groups"]}
    # epoch 3 is after the step at epoch 1: 0.1 x 0.1 x the group's multiplier
    assert by_name["weight"]["initial_lr"] == pytest.approx(0.1)
    assert by_name["bias"]["initial_lr"] == pytest.approx(0.2)
    assert by_name["bias"]["weight_decay"] == 0 and by_name["weight"]["weight_decay"] > 0
    last = (tmp_path / "train.csv").read_text().splitlines()[-1].split(",")
    assert float(last[4]) == pytest.approx(0.01)


def test_a_new_run_does_not_overwrite_an_earlier_checkpoint(straight, frame_root, capsys):
    before = (straight / "checkpoint.pth.tar").read_bytes()
    argv = ["--data-root", str(frame_root), "--record-dir", str(straight)] + FAST
    assert "--resume" in _cli_error(SPATIAL, argv, capsys)
    assert (straight / "checkpoint.pth.tar").read_bytes() == before


def test_non_finite_loss_keeps_the_last_good_checkpoint(straight, tmp_path, capsys):
    ckpt = tmp_path / "checkpoint.pth.tar"
    shutil.copy(straight / "checkpoint.pth.tar", ckpt)
    before = ckpt.read_bytes()
    argv = ["--resume", str(ckpt), "--record-dir", str(tmp_path), "--epochs", "3"]
    argv += ["--lr", "1e38", "--clip-grad", "0", "--workers", "0"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda a: main(SPATIAL, a), argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "epoch 3" in err and "--lr" in err and "Traceback" not in err
    assert ckpt.read_bytes() == before


@pytest.fixture(scope="module")
def motion_record(frame_root, tmp_path_factory):
    record = tmp_path_factory.mktemp("motion")
    _run(MOTION, frame_root, record, "--epochs", "1", "--stack-length", "4")
    return record


def test_motion_stream_trains_on_flow_stacks(motion_record):
    ckpt = torch.load(motion_record / "checkpoint.pth.tar", weights_only=True)
    assert ckpt["stream"] == "motion" and ckpt["in_channels"] == 8
    assert ckpt["model"]["backbone.conv1.0.weight"].shape[1] == 8  # ShuffleNet's input conv
    with np.load(motion_record / "video_scores.npz") as f:
        assert str(f["stream"]) == "motion" and f["scores"].shape == (6, 3)


def _cli_error(stream, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda a: main(stream, a), argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ") and err.count("\n") == 1, err
    return err


def test_checkpoint_of_another_stream_arch_or_class_count_is_refused(
    straight, motion_record, frame_root, tmp_path, capsys
):
    spatial = str(straight / "checkpoint.pth.tar")
    base = ["--data-root", str(frame_root), "--record-dir", str(tmp_path), "--workers", "0"]
    err = _cli_error(MOTION, ["--evaluate", "--resume", spatial] + base, capsys)
    assert "spatial-stream checkpoint" in err
    err = _cli_error(
        SPATIAL, ["--evaluate", "--resume", spatial, "--arch", "resnet18"] + base, capsys
    )
    assert f"--arch {SMALL_ARCH}, not resnet18" in err
    ckpt = torch.load(spatial, weights_only=True)
    ckpt["classes"] = ckpt["classes"] + ["Extra"]
    torch.save(ckpt, tmp_path / "four.pth.tar")
    err = _cli_error(SPATIAL, ["--resume", str(tmp_path / "four.pth.tar")] + base, capsys)
    assert "has 4 classes but the split has 3" in err
    motion = str(motion_record / "checkpoint.pth.tar")
    err = _cli_error(
        MOTION, ["--evaluate", "--resume", motion, "--stack-length", "5"] + base, capsys
    )
    assert "8 input channels" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data-root", "{tmp}/nowhere"], "--data-root"),
        (["--data-root", "{root}", "--splits-dir", "{tmp}"], "split file not found"),
        (["--data-root", "{root}", "--arch", "resnet9"], "unknown --arch 'resnet9'; did you mean"),
        (["--data-root", "{root}", "--arch", "vit_b_16", "--crop-size", "32"], "takes 224 px"),
        (["--data-root", "{root}", "--arch", "mc3_18"], "is a 3D network: it belongs to the clip"),
        (["--data-root", "{root}", "--evaluate"], "--evaluate needs --resume"),
        (["--data-root", "{root}", "--resume", "{tmp}/none.pth.tar"], "checkpoint not found"),
    ],
)
def test_user_errors_are_one_line_and_exit_code_2(argv, message, frame_root, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path, root=frame_root) for a in argv]
    assert message in _cli_error(SPATIAL, argv + ["--workers", "0"], capsys)


def test_validation_groups_keep_model_best(frame_root, tmp_path, capfd):
    _run(SPATIAL, frame_root, tmp_path, "--epochs", "2", "--val-groups", "1")
    printed = "".join(capfd.readouterr())  # not a terminal, as in a log file: no progress bars
    assert "\r" not in printed and len(printed.splitlines()) <= 10, printed
    assert (tmp_path / "model_best.pth.tar").is_file()
    assert len((tmp_path / "val.csv").read_text().splitlines()) == 3
    best = torch.load(tmp_path / "model_best.pth.tar", weights_only=True)
    assert best["epoch"] in (1, 2) and best["best_val_top1"] >= 0
    with np.load(tmp_path / "val_scores.npz") as val, np.load(tmp_path / "video_scores.npz") as t:
        assert str(val["stream"]) == "spatial" and int(val["epoch"]) == 2  # the last epoch's
        assert len(val["videos"]) == 3 and not set(val["videos"]) & set(t["videos"])


def test_both_streams_train_on_frames_of_real_clips(shared_data, tmp_path):
    """Real UCF101 clips -> extraction tool -> one short epoch of each stream, official lists."""
    root, splits, chosen = extract_real_clips(shared_data, tmp_path)
    for stream in (SPATIAL, MOTION):
        record = tmp_path / stream.name
        main(
            stream,
            ["--data-root", str(root), "--splits-dir", str(splits), "--record-dir", str(record)]
            + FAST
            + ["--epochs", "1", "--batch-size", "2", "--crop-size", "48"],
        )
        with np.load(record / "video_scores.npz") as f:
            assert f["scores"].shape == (2, 101) and np.isfinite(f["scores"]).all()
            assert sorted(f["videos"]) == sorted(chosen[1::2])
        ckpt = torch.load(record / "checkpoint.pth.tar", weights_only=True)
        assert ckpt["in_channels"] == (3 if stream is SPATIAL else 20)


def test_channels_last_helper_converts_the_weights_2d_and_3d():
    for arch, fmt in (("resnet18", torch.channels_last), ("r2plus1d_18", torch.channels_last_3d)):
        model = build_recognizer(arch, 3, 3, 0.0, partial_bn=False)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Conv3d)]
        assert not any(m.weight.is_contiguous(memory_format=fmt) for m in convs[:1]), arch
        model.to_channels_last()
        assert all(m.weight.is_contiguous(memory_format=fmt) for m in convs), arch


def test_compile_switch_compiles_the_backbone_gives_the_same_scores_and_is_recorded(
    frame_root, tmp_path, monkeypatch
):
    """--compile goes through torch.compile (here its tracer with the eager backend: inductor
    needs a minute on the CPU), is kept in the checkpoint's args and is not taken over."""
    compiled = []
    real = torch.compile

    def traced(fn, *args, **kwargs):
        compiled.append(fn)
        return real(fn, backend="eager")

    monkeypatch.setattr(torch, "compile", traced)
    trained = tmp_path / "trained"  # ResNet-18: fewer operations to trace than ShuffleNet's
    _run(SPATIAL, frame_root, trained, "--epochs", "1", "--compile", "--arch", "resnet18")
    assert len(compiled) == 1  # training and its test: one compiled backbone
    ckpt = trained / "checkpoint.pth.tar"
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert saved["args"]["compile"] is True and "_orig_mod" not in "".join(saved["model"])
    eager = tmp_path / "eager.npz"
    again = ["--evaluate", "--resume", str(ckpt), "--workers", "0", "--record-dir", str(trained)]
    main(SPATIAL, [*again, "--scores-out", str(eager)])
    assert len(compiled) == 1  # a run-local option: the evaluation was not compiled
    with np.load(eager) as a, np.load(trained / "video_scores.npz") as b:
        np.testing.assert_allclose(a["scores"], b["scores"], rtol=1e-5, atol=1e-5)
