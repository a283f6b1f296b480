"""Every command of the README's workflows and of the docs pages, run as written on tiny data, and
their results checked: docs and behaviour cannot drift apart. The generated clips stand where the
README's step 1 unpacks UCF101 (data/UCF-101, data/ucfTrainTestlist); a few paths are mapped onto
them, and small-model options are appended (the last value of an option wins), so the commands
themselves are the docs'. A block after ``<!-- no-test: reason -->`` is not run."""

import ast
import contextlib
import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import fusion
from bench.real_clips import SMALL_DATA
from engine.cli import main as stream_main
from engine.cli import parse_args
from engine.config import make_options
from engine.streams import MOTION, SPATIAL
from engine.trainer import accumulation_steps, describe_batch, describe_steps
from tests.helpers import single_thread
from tools import export, extract_features, extract_frames_flow, predict
from tools.synthetic_actions import generate

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("## UCF101, step by step", "## Your own clips")
# Docs pages whose commands the tests run, in this order (later pages use earlier outputs).
RUN_PAGES = ("training", "recipe", "extraction", "fusion", "temporal", "prediction")
# Pages with commands the tests cannot run on a CPU with tiny data, and why.
NOT_RUN = {
    "distributed": "torchrun across GPUs and machines (tests/test_distributed.py runs gloo)",
    "clip_stream": "3D networks with Kinetics weights (tests/test_clip_stream.py)",
    "speed": "benchmarks over real clips (tests/test_gpu_check.py runs the dry run)",
    "results": "bench/real_clips.py, minutes per seed",
}
SKIP = ("mkdir", "cd", "wget", "unrar", "unzip")
MODEL = ["--arch", "resnet18", "--pretrained", "none", "--crop-size", "32"]  # not on --resume
RUN = ["--epochs", "1", "--test-snippets", "2", "--batch-size", "4", "--workers", "0"]
RUN += ["--accum-steps", "1"]
FAST_EXTRACT = ["--workers", "1", "--short-side", "32", "--preset", "fast"]
STARTUP = (  # the form of the line a training run starts with (engine.trainer)
    r"\w+ stream: \w+, \d+ classes, \d+ training / \d+ validation / \d+ test videos, device \S+, "
    r"epochs \d+\.\.\d+; effective batch \d+ process\(es\) x \d+ videos x \d+ accumulation steps "
    r"= \d+ \((--accum-steps given|accumulation follows processes x batch); the recipe's lr is "
    r"for \d+\), lr [\d.e-]+; an epoch is \d+ steps? of \d+ videos(, the last of \d+)?, every "
    r"video weighed the same( \(\d+ drawn twice to even out \d+ processes\))?; writing to \S+"
)

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def code_commands(text: str) -> list[str]:
    """The ``python`` commands of the indented code blocks of ``text`` (continuation lines
    joined), leaving out fenced blocks and the block after a ``no-test`` comment."""
    lines, fenced, skipping = [], False, False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif fenced:
            continue
        elif re.match(r"<!-- no-test: \S.* -->", line):
            skipping = True
        elif line.startswith("    "):
            if not skipping:
                lines.append(line.strip())
        elif line.strip():
            skipping = False
    joined = re.sub(r"\\\s*\n\s*", " ", "\n".join(lines))
    commands = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("python ") and not line.startswith(SKIP):
            commands.append(line)
    return commands


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return [
        command
        for title in SECTIONS
        for command in code_commands(text.split(title, 1)[1].split("\n## ", 1)[0])
    ]


def read_page(page: str) -> str:
    return (ROOT / "docs" / f"{page}.md").read_text()


def page_commands(page: str) -> list[str]:
    return code_commands(read_page(page))


@dataclass
class Workspace:
    root: Path
    paths: dict[str, str]  # a docs path -> the generated data's
    classes: list[str]
    test_videos: set[str]
    videos: int
    log: list[str]  # what each command printed


def run(command: str, ws: Workspace):
    """Run one docs command in-process; returns what the script returned and keeps its output."""
    argv = [ws.paths.get(token, token) for token in shlex.split(command)[1:]]
    script, args = argv[0], argv[1:]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if script == "tools/extract_frames_flow.py":
            result = extract_frames_flow.main(args + FAST_EXTRACT)
            assert result == 0, command
        elif script in ("spatial_cnn.py", "motion_cnn.py"):
            spec = SPATIAL if script == "spatial_cnn.py" else MOTION
            model = MODEL + (["--stack-length", "2"] if spec is MOTION else [])
            extra = RUN if "--resume" in args else model + RUN  # a checkpoint brings its model
            if "--val-groups" in args:
                extra = extra + ["--val-groups", "1"]  # of the two training groups
            result = stream_main(spec, args + extra)
            assert result == 0, command
        elif script == "fusion.py":
            result = fusion.main(args)
        elif script == "tools/predict.py":
            result = predict.main(args + ["--device", "cpu"])
        elif script == "tools/export.py":
            result = export.main(args)
        elif script == "tools/extract_features.py":
            result = extract_features.main(args + ["--workers", "0", "--device", "cpu"])
        else:
            raise AssertionError(f"the docs run an unknown script: {script}")
    ws.log.append(out.getvalue())
    return result


def scores(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def video_name(line: str) -> str:
    """The video of a custom split line: ``<video>TAB<class>`` (or a space before tabs)."""
    return Path(line.split("\t")[0] if "\t" in line else line.split()[0]).stem


def assert_test_scores(path: Path, ws: Workspace) -> None:
    """A score file holds one finite row of every class for each test video of the split."""
    s = scores(path)
    assert set(s["videos"].tolist()) == ws.test_videos, path
    assert s["scores"].shape == (len(ws.test_videos), len(ws.classes)), path
    assert np.isfinite(s["scores"]).all() and list(s["classes"]) == ws.classes


def assert_accuracies(table: dict, streams, videos: int) -> None:
    for name in streams:
        for key in ("top1", "top5", "mean_class"):
            assert 0 <= table[name][key] <= 100, (name, key, table[name][key])
        assert table[name]["videos"] == videos


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """The README's workflows run in a fresh folder: the state the docs pages start from."""
    tmp = tmp_path_factory.mktemp("readme")
    data = generate(tmp / "gen", 2, 1, (48, 32), (8, 8), seed=2)
    (tmp / "data").mkdir()
    shutil.move(data.videos_dir, tmp / "data" / "UCF-101")  # as step 1 unpacks UCF101
    shutil.move(data.splits_dir, tmp / "data" / "ucfTrainTestlist")
    folders = sorted(p.name for p in (tmp / "data" / "UCF-101").iterdir())
    class_ind = (tmp / "data" / "ucfTrainTestlist" / "classInd.txt").read_text().split()
    classes = class_ind[1::2]  # "1 Name" lines: the label order
    clip = next(c for c in data.clips if not c.train)
    clip_path = tmp / "data" / "UCF-101" / clip.path.relative_to(data.videos_dir)
    paths = {  # most are where the docs say; these few are mapped
        "data/UCF-101/Biking/v_Biking_g01_c01.avi": str(clip_path),
        "data/UCF-101/Biking": f"data/UCF-101/{folders[0]}",
        "data/UCF-101/Diving": f"data/UCF-101/{folders[1]}",
        "UCF-101": "data/UCF-101",
        "/shared/ucf101": "shared/ucf101",
        "my_clips": "data/UCF-101",
        "$WEIGHTS": "none",  # as the appended --pretrained none
    }
    ws = Workspace(tmp, paths, classes, {c.name for c in data.clips if not c.train}, 0, [])
    ws.videos = len(data.clips)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)  # record/ and the outputs land here
        commands = readme_commands()
        results = [run(command, ws) for command in commands]
    ws.readme, ws.readme_results = commands, results
    return ws


def test_the_readme_workflows_run_as_written_and_give_their_results(workspace):
    ws = workspace
    scripts = {shlex.split(c)[1] for c in ws.readme}
    assert scripts >= {"tools/extract_frames_flow.py", "spatial_cnn.py", "motion_cnn.py"}
    assert scripts >= {"fusion.py", "tools/predict.py"}
    record = ws.root / "record"
    for stream in ("spatial", "motion", "mine_spatial", "mine_motion"):
        if stream.startswith("mine"):  # the custom split of --test-fraction 0.3
            split = (ws.root / "data" / "mine" / "splits" / "test.txt").read_text()
            mine = {video_name(line) for line in split.splitlines() if line.strip()}
            assert set(scores(record / stream / "video_scores.npz")["videos"]) == mine
        else:
            assert_test_scores(record / stream / "video_scores.npz", ws)
    # Step 5: evaluation writes its own file and leaves the run's scores alone.
    evaluated = record / "spatial" / "eval_checkpoint_e1_tencrop_n2_scores.npz"  # _n: 2 snippets
    assert_test_scores(evaluated, ws)
    assert (
        scores(evaluated)["test_mode"] != scores(record / "spatial/video_scores.npz")["test_mode"]
    )
    # Step 6: the accuracy of each stream and of the fusion, on every test video.
    table = json.loads((record / "fusion.json").read_text())
    assert_accuracies(table, ("spatial", "motion", "fused"), len(ws.test_videos))
    # Step 7: a class name, and the GIF.
    assert (ws.root / "biking.gif").read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    # "Your own clips" ends with the accuracy of its two streams and their fusion.
    assert_accuracies(ws.readme_results[-1], ("spatial", "motion", "fused"), len(mine))
    output = "".join(ws.log)
    # The start-up line docs/training.md quotes has the form this run printed, with its numbers.
    line = re.search(r"^spatial stream: resnet18, 4 classes, .*$", output, re.M).group(0)
    quoted = re.search(r"^ +(spatial stream: resnet101, .*)$", read_page("training"), re.M)
    for printed in (line, quoted.group(1)):
        assert re.fullmatch(STARTUP, printed), printed
    assert re.fullmatch(
        r"spatial stream: resnet18, 4 classes, 8 training / 0 validation / 4 test videos, "
        r"device cpu, epochs 1\.\.1; effective batch 1 process\(es\) x 4 videos x 1 accumulation "
        r"steps = 4 \(--accum-steps given; the recipe's lr is for 128\), lr 0\.001; an epoch is 2 "
        r"steps of 4 videos, every video weighed the same; writing to record/spatial",
        line,
    ), line


def own_clips_commands() -> tuple[str, list[str], list[str]]:
    """The "Your own clips" section, its commands, and the commands of its first code block."""
    section = (ROOT / "README.md").read_text().split("## Your own clips", 1)[1].split("\n## ")[0]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("    "))
    end = next(
        (i for i in range(start, len(lines)) if lines[i].strip() and lines[i][:4] != "    "),
        len(lines),
    )
    return section, code_commands(section), code_commands("\n".join(lines[start:end]))


def python_block(page: str) -> str:
    return re.search(r"```python\n(.*?)```", read_page(page), re.S).group(1)


def api_example_options() -> dict:
    """The keywords of docs/python_api.md's first ``make_options`` call."""
    call = next(
        node
        for node in ast.walk(ast.parse(python_block("python_api")))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "make_options"
    )
    return {k.arg: ast.literal_eval(k.value) for k in call.keywords}


def test_your_own_clips_is_one_block_with_the_fast_preset_and_the_measured_recipe(
    tmp_path, monkeypatch
):
    """The block a new user copies extracts with the fast preset at short side 128 and trains
    both streams with bench/real_clips.py's small-data recipe (its SMALL_DATA and default arch),
    as does docs/python_api.md's example: the command lines as written parse to it (with
    torchvision's ImageNet weights)."""
    section, commands, block = own_clips_commands()
    assert block == commands
    scripts = [shlex.split(c)[1] for c in block]
    assert scripts == [
        "tools/extract_frames_flow.py",
        "spatial_cnn.py",
        "motion_cnn.py",
        "fusion.py",
    ]
    assert re.search(r"^    WEIGHTS=imagenet ", section, re.M)
    assert {"--preset fast", "--short-side 128"} <= set(re.findall(r"--\S+ \S+", block[0]))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "mine").mkdir(parents=True)
    written = [shlex.split(c.replace("$WEIGHTS", "imagenet"))[2:] for c in block[1:3]]
    trained = [parse_args(SPATIAL, written[0])[0], parse_args(MOTION, written[1])[0]]
    api = make_options(SPATIAL, **api_example_options())
    for options in (*trained, api):
        assert options.arch == "mobilenet_v2" and options.pretrained == "imagenet"
        assert {key: getattr(options, key) for key in SMALL_DATA} == SMALL_DATA
        assert options.dataset == "custom" and options.data_root == "data/mine"


# Run as a script in another folder: train, evaluate and fuse, on tiny settings over the page's.
API_DRIVER = """
import torch
import engine.config

torch.set_num_threads(1)
given = engine.config.make_options
engine.config.make_options = lambda spec, **values: given(spec, **{**values, **%r})
exec(compile(open("my_script.py").read(), "my_script.py", "exec"), {"__name__": "__main__"})
"""
API_TINY = dict(arch="resnet18", pretrained="none", crop_size=32, epochs=1, batch_size=4)


def test_python_api_example_runs_from_any_folder_with_pythonpath(workspace, tmp_path):
    """docs/python_api.md's example, run as it says (PYTHONPATH=<repository>) from a folder that
    holds the README's data/mine and motion scores, trains, evaluates and fuses."""
    assert "PYTHONPATH=/path/to/two-stream python my_script.py" in read_page("python_api")
    (tmp_path / "my_script.py").write_text(python_block("python_api"))
    (tmp_path / "data").symlink_to(workspace.root / "data")
    motion = tmp_path / "record" / "mine_motion"
    motion.mkdir(parents=True)
    shutil.copy(workspace.root / "record" / "mine_motion" / "video_scores.npz", motion)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    driver = API_DRIVER % (API_TINY | {"workers": 0})
    done = subprocess.run(
        [sys.executable, "-c", driver], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert 0 <= float(done.stdout.split()[-1]) <= 100  # the fused top-1
    record = tmp_path / "record" / "api_spatial"
    args = json.loads((record / "args.json").read_text())
    assert (args["lr"], args["head_lr_mult"], args["lr_schedule"]) == (1e-4, 100, "cosine")
    assert len(list(record.glob("eval_checkpoint_e1_tencrop*_scores.npz"))) == 1


def test_the_start_up_lines_quoted_in_the_docs_are_the_codes():
    """docs/training.md and docs/distributed.md quote the effective batch of 1 x 32 and 8 x 32 as
    the code words it (1 x 32 x 4 = 128, 8 x 32 x 1 = 256)."""
    for page, world, batch, effective in (("training", 1, 32, 128), ("distributed", 8, 32, 256)):
        text = " ".join(read_page(page).split())
        accum = accumulation_steps(None, 128, world, batch)
        line = describe_batch(world, batch, accum, 128, given=False)
        assert line in text and f"= {effective} " in line, (page, line)
    # UCF101 split 1: 9,537 = 298 x 32 + 1 training videos, a last step of 32 + 32 + 1.
    steps = describe_steps(1, [32] * 298 + [1], 4, 9537)
    assert (
        steps == "an epoch is 75 steps of 128 videos, the last of 65, every video weighed the same"
    )
    assert steps in " ".join(read_page("training").split())
    # 2 processes x 5 videos (9 and one repeated by the sampler) in batches of 2, 2 and 1.
    assert describe_steps(2, [2, 2, 1], 2, 9).endswith(
        "2 steps of 8 videos, the last of 2, every video weighed the same (1 drawn twice to even "
        "out 2 processes)"
    )


def run_page(page: str, ws: Workspace, monkeypatch) -> list:
    monkeypatch.chdir(ws.root)
    commands = page_commands(page)
    assert commands, f"docs/{page}.md has no command to run"
    return [run(command, ws) for command in commands]


def test_training_page_resumes_and_evaluates(workspace, monkeypatch):
    run_page("training", workspace, monkeypatch)
    assert "is a finished run" in workspace.log[-2]  # the resume: nothing left to train
    evaluated = workspace.root / "record/spatial/eval_checkpoint_e1_tencrop_n2_scores.npz"
    assert_test_scores(evaluated, workspace)


def test_recipe_page_trains_the_small_data_recipe(workspace, monkeypatch):
    run_page("recipe", workspace, monkeypatch)
    args = json.loads((workspace.root / "record/mine_small/args.json").read_text())
    assert args["lr_schedule"] == "cosine" and args["head_lr_mult"] == 100
    assert (workspace.root / "record/mine_small/video_scores.npz").is_file()


def test_extraction_page_shards_cover_every_video_once(workspace, monkeypatch):
    run_page("extraction", workspace, monkeypatch)
    shared = workspace.root / "shared" / "ucf101"
    index = json.loads((shared / "index.json").read_text())
    assert len(index["videos"]) == workspace.videos
    assert len(list((shared / "jpegs_256").iterdir())) == workspace.videos
    assert len(list((shared / "tvl1_flow" / "u").iterdir())) == workspace.videos


def test_fusion_page_fuses_and_tunes_weights_on_validation(workspace, monkeypatch):
    ws = workspace
    results = [r for r in run_page("fusion", ws, monkeypatch) if isinstance(r, dict)]
    for table in results:
        assert_accuracies(table, ("spatial", "motion", "fused"), len(ws.test_videos))
    fused = ws.root / "record" / "fused"
    assert json.loads((fused / "fused.json").read_text()) == results[0]
    assert_test_scores(fused / "fused.npz", ws)
    assert scores(fused / "fused.npz")["stream"] == "fused"
    with (fused / "fused_per_class_accuracy.csv").open() as f:
        assert {row["class"] for row in csv.DictReader(f)} <= set(ws.classes)
    assert (ws.root / "record/spatial_val/val_scores.npz").is_file()
    chosen = json.loads((ws.root / "record/tuned/fusion_weights.json").read_text())
    assert chosen["streams"] == ["spatial", "motion"] and len(chosen["weights"]) == 2
    assert sum(chosen["weights"]) == pytest.approx(1.0) and 0 <= chosen["validation"]["top1"] <= 100


def test_temporal_page_trains_recurrent_heads_and_fuses_them(workspace, monkeypatch):
    ws = workspace
    *_, table = run_page("temporal", ws, monkeypatch)
    assert_accuracies(table, ("spatial", "motion", "fused"), len(ws.test_videos))
    args = json.loads((ws.root / "record/spatial_lstm/args.json").read_text())
    assert args["consensus"] == "lstm" and args["num_segments"] == 8


def test_prediction_page_predicts_exports_and_extracts_features(workspace, monkeypatch):
    ws = workspace
    single, many, exported, features, cam = run_page("prediction", ws, monkeypatch)
    assert single["top1"] in ws.classes
    assert sum(single["fused"]) == pytest.approx(1.0, abs=1e-4)
    assert json.loads((ws.root / "biking.json").read_text())["top1"] == single["top1"]
    assert {Path(r["video"]).parent.name for r in many} == set(sorted(ws.classes)[:2])
    assert all(r["top1"] in ws.classes for r in many)
    with (ws.root / "predictions.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(many) == ws.videos // 2
    meta = json.loads((ws.root / "spatial.json").read_text())
    assert meta["classes"] == ws.classes and (ws.root / "spatial.onnx").stat().st_size > 0
    assert (ws.root / "spatial.pt").is_file() and exported
    with np.load(features) as f:
        assert len(f["videos"]) == ws.videos and np.isfinite(f["features"]).all()
        assert f["features"].shape == (ws.videos, 512)  # resnet18's pooled features
    assert (ws.root / "where.png").read_bytes()[:4] == b"\x89PNG" and cam["top1"] in ws.classes
    # The page's onnxruntime snippet is run by tests/test_export.py.


def test_every_page_with_commands_is_run_or_says_why_not():
    pages = {p.stem for p in (ROOT / "docs").glob("*.md") if page_commands(p.stem)}
    assert pages <= set(RUN_PAGES) | set(NOT_RUN), pages - set(RUN_PAGES) - set(NOT_RUN)
    assert set(RUN_PAGES) <= pages


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(m) for m in re.findall(r"^#+ (.+)$", text, re.M)}


def test_docs_links_resolve():
    """Every docs page is linked from the README's "Where to read more", and every relative link
    of the README and the docs pages names a file (and heading) that exists."""
    readme = ROOT / "README.md"
    more = readme.read_text().split("## Where to read more", 1)[1]
    pages = {p.name for p in (ROOT / "docs").glob("*.md")}
    assert set(re.findall(r"\(docs/([\w.-]+\.md)\)", more)) == pages
    for page in [readme, *sorted((ROOT / "docs").glob("*.md"))]:
        text = re.sub(r"```.*?```|<!--.*?-->", "", page.read_text(), flags=re.S)  # not shown
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"\w+://", target):
                continue
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            assert linked.is_file(), f"{page.name}: {target}"
            if anchor:
                assert anchor in anchors(linked), f"{page.name}: {target}"
