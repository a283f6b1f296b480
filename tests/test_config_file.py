"""--config FILE (issue 31.5) and the test_frames -> test_snippets rename (issue 31.2): a file's
values are the defaults, the command line overrides them, a run's own args.json starts a new run
with the same settings, and old names keep reading from config files and checkpoints."""

import json
import sys

import pytest
import torch

from engine.cli import build_parser, main, parse_args
from engine.config import RUN_LOCAL, make_options, options_from_dict
from engine.evaluation import evaluation_scores_path
from engine.streams import CLIP, MOTION, SPATIAL
from tests.helpers import SMALL_ARCH
from utils.errors import UserError


def _config(tmp_path, values, name="run.json"):
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(values))
    else:
        path.write_text(values)
    return path


def _parse(frame_root, path, *argv, spec=SPATIAL):
    return parse_args(spec, ["--data-root", str(frame_root), "--config", str(path), *argv])[0]


def test_a_config_gives_the_defaults_and_the_command_line_overrides_them(frame_root, tmp_path):
    values = {"epochs": 3, "lr": 1, "lr_steps": [1, 2], "ten_crop": True, "stack_length": 4}
    path = _config(tmp_path, values)
    options = _parse(frame_root, path, "--epochs", "5", "--no-ten-crop", spec=MOTION)
    assert (options.epochs, options.lr, options.lr_steps) == (5, 1.0, [1, 2])
    assert isinstance(options.lr, float) and options.ten_crop is False
    assert options.stream["stack_length"] == 4
    assert options.dropout == 0.7  # not in the file: the stream's default


def test_a_yaml_config_reads_as_json_does_and_says_when_pyyaml_is_missing(
    frame_root, tmp_path, monkeypatch
):
    pytest.importorskip("yaml")
    path = _config(tmp_path, "epochs: 3\nlr_steps: [1, 2]\nten-crop: true\n", "run.yaml")
    options = _parse(frame_root, path)
    assert (options.epochs, options.lr_steps, options.ten_crop) == (3, [1, 2], True)
    with pytest.raises(UserError, match=r"lr.* must be a number.*write 1\.0e-3"):
        _parse(frame_root, _config(tmp_path, "lr: 1e-3\n", "lr.yml"))
    monkeypatch.setitem(sys.modules, "yaml", None)  # as without PyYAML
    with pytest.raises(UserError, match=r"run\.yaml: reading YAML needs PyYAML"):
        _parse(frame_root, path)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epoch": 3}, r"unknown key 'epoch' for the spatial stream; did you mean 'epochs'\?"),
        ({"stack_length": 4}, r"unknown key 'stack_length' for the spatial stream$"),
        ({"epochs": "3"}, r"'epochs' must be a whole number, not \"3\""),
        ({"epochs": 3.5}, r"'epochs' must be a whole number, not 3.5"),
        ({"epochs": True}, r"'epochs' must be a whole number, not true"),
        ({"lr": None}, r"'lr' must be a number, not null"),
        ({"lr_steps": [1, "2"]}, r"'lr_steps' must be a list of whole numbers"),
        ({"ten_crop": 1}, r"'ten_crop' must be true or false, not 1"),
        ({"dataset": "kinetics"}, r"'dataset': invalid choice: 'kinetics'"),
        ({"split": 4}, r"'split': invalid choice: 4"),
        ([1, 2], r"a config holds one mapping of options"),
    ],
)
def test_a_bad_config_is_one_line_naming_the_file_and_the_key(
    frame_root, tmp_path, values, message
):
    path = _config(tmp_path, values)
    with pytest.raises(UserError, match=message) as caught:
        _parse(frame_root, path)
    assert str(caught.value).startswith(str(path)) and "\n" not in str(caught.value)


def test_an_unreadable_config_is_one_line(frame_root, tmp_path):
    with pytest.raises(UserError, match=r"--config .*missing\.json: cannot read it"):
        _parse(frame_root, tmp_path / "missing.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"epochs": 3,\n}')
    with pytest.raises(UserError, match=r"broken\.json line 2: not valid JSON"):
        _parse(frame_root, broken)


def test_keys_of_one_invocation_are_ignored_with_one_note(frame_root, tmp_path, capsys):
    ignored = {"record_dir": "elsewhere", "workers": 7, "device": "cuda:3", "evaluate": True}
    ignored.update(resume="old.pth.tar", amp="bf16", compile=True)
    path = _config(tmp_path, {**ignored, "accum_steps_resolved": 16, "epochs": 2})
    options = _parse(frame_root, path, "--workers", "0")
    assert options.epochs == 2 and options.workers == 0
    assert (options.record_dir, options.device, options.amp) == ("record/spatial", None, "none")
    assert not options.evaluate and not options.resume and not options.compile
    assert options.accum_steps is None  # resolved for the run's own processes
    (note,) = capsys.readouterr().err.splitlines()
    assert note == (
        f"note: {path}: ignored {', '.join(sorted(ignored))} (they belong to one invocation: "
        "give them on the command line)"
    )
    assert set(ignored) <= RUN_LOCAL and "--config FILE" in build_parser(SPATIAL).format_help()


def _checkpoint(tmp_path, args):
    path = tmp_path / "old.pth.tar"
    torch.save({"format": 2, "stream": "spatial", "epoch": 1, "model": {}, "args": args}, path)
    return path


def test_on_resume_the_command_line_beats_the_config_beats_the_checkpoint(frame_root, tmp_path):
    saved = dict(data_root=str(frame_root), epochs=9, lr=0.5, dropout=0.3, momentum=0.8)
    ckpt = _checkpoint(tmp_path, saved)
    path = _config(tmp_path, {"epochs": 5, "lr": 0.2, "record_dir": "ignored"})
    options = _parse(frame_root, path, "--resume", str(ckpt), "--epochs", "6")
    assert (options.epochs, options.lr, options.dropout, options.momentum) == (6, 0.2, 0.3, 0.8)
    assert options.weight_decay == 5e-4  # in none of them: the default
    assert options.record_dir == str(tmp_path)  # the checkpoint's folder, never the config's


def test_test_frames_is_still_read_from_configs_checkpoints_and_the_command_line(
    frame_root, tmp_path
):
    assert _parse(frame_root, _config(tmp_path, {"test_frames": 5})).test_snippets == 5
    both = _config(tmp_path, {"test_frames": 5, "test_snippets": 6}, "both.json")
    assert _parse(frame_root, both).test_snippets == 6  # the new name wins
    ckpt = _checkpoint(tmp_path, {"data_root": str(frame_root), "test_frames": 7})
    resumed, _ = parse_args(SPATIAL, ["--resume", str(ckpt), "--evaluate"])
    assert resumed.test_snippets == 7
    assert options_from_dict(SPATIAL, {"test_frames": 7}).test_snippets == 7  # predict's path
    typed = ["--data-root", str(frame_root), "--test-frames", "4"]
    assert parse_args(SPATIAL, typed)[0].test_snippets == 4
    assert make_options(SPATIAL, data_root=str(frame_root), test_frames=3).test_snippets == 3
    assert "test_frames" not in make_options(CLIP, data_root=str(frame_root)).as_dict()


def test_an_evaluation_file_names_its_snippets_apart_from_its_sequences(frame_root):
    common = dict(data_root=str(frame_root), resume="r/checkpoint.pth.tar", evaluate=True)
    snippets = make_options(SPATIAL, **common, test_snippets=5)
    assert evaluation_scores_path(snippets, 3).name == "eval_checkpoint_e3_n5_scores.npz"
    sequences = make_options(SPATIAL, **common, test_sequences=2, num_segments=4)
    assert evaluation_scores_path(sequences, 3).name == "eval_checkpoint_e3_s2x4_scores.npz"


def test_the_command_line_tells_typed_options_from_defaults_and_keeps_them():
    parser = build_parser(SPATIAL)
    assert parser.typed(["--epochs", "80", "--no-ten-crop"]) == {"epochs": 80, "ten_crop": False}
    assert parser.parse_args([]).epochs == 80 and parser.parse_args([]).ten_crop is False


def test_a_runs_args_json_starts_a_new_run_with_the_same_settings(frame_root, tmp_path, capsys):
    first, second = tmp_path / "x", tmp_path / "y"
    small = ["--arch", SMALL_ARCH, "--pretrained", "none", "--crop-size", "32", "--epochs", "1"]
    small += ["--num-segments", "2", "--test-snippets", "2", "--batch-size", "4", "--lr", "0.01"]
    argv = ["--data-root", str(frame_root), "--workers", "0", *small]
    assert main(SPATIAL, [*argv, "--record-dir", str(first)]) == 0
    config = ["--config", str(first / "args.json"), "--workers", "0"]
    b = parse_args(SPATIAL, [*config, "--record-dir", str(second)])[0].as_dict()  # what it runs
    a = json.loads((first / "args.json").read_text())
    assert a.pop("record_dir") == str(first) and b.pop("record_dir") == str(second)
    assert a.pop("accum_steps_resolved") == 32 and b["accum_steps"] is None  # 128 / 4, re-derived
    assert a == b and b["test_snippets"] == 2 and b["arch"] == SMALL_ARCH
