"""Every command of the README's workflows, run as written on tiny data: README and behaviour
cannot drift apart. Paths are mapped onto generated clips, and small-model options are appended
(the last value of an option wins), so the commands themselves are the README's."""

import re
import shlex
from pathlib import Path

import pytest

import fusion
from engine.cli import main as stream_main
from engine.streams import MOTION, SPATIAL
from tests.helpers import single_thread
from tools import extract_frames_flow, predict
from tools.synthetic_actions import generate

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("## UCF101, step by step", "## Your own clips")
SKIP = ("mkdir", "cd", "wget", "unrar", "unzip")
MODEL = ["--arch", "resnet18", "--pretrained", "none", "--crop-size", "32"]  # not on --resume
RUN = ["--epochs", "1", "--test-frames", "2", "--batch-size", "4", "--workers", "0"]
RUN += ["--accum-steps", "1"]
FAST_EXTRACT = ["--workers", "1", "--short-side", "32", "--preset", "fast"]

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def readme_commands() -> list[str]:
    """The shell commands of the workflow sections, continuation lines joined."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for title in SECTIONS:
        section = text.split(title, 1)[1].split("\n## ", 1)[0]
        lines = [line.strip() for line in section.splitlines() if line.startswith("    ")]
        joined = re.sub(r"\\\s*\n\s*", " ", "\n".join(lines))
        for line in joined.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("python ") and not line.startswith(SKIP):
                commands.append(line)
    return commands


def run(command: str, paths: dict[str, str]) -> None:
    for old, new in paths.items():
        command = command.replace(old, new)
    argv = shlex.split(command)[1:]
    script, args = argv[0], argv[1:]
    if script == "tools/extract_frames_flow.py":
        assert extract_frames_flow.main(args + FAST_EXTRACT) == 0
    elif script in ("spatial_cnn.py", "motion_cnn.py"):
        spec = SPATIAL if script == "spatial_cnn.py" else MOTION
        model = MODEL + (["--stack-length", "2"] if spec is MOTION else [])
        extra = RUN if "--resume" in args else model + RUN  # a checkpoint brings its model
        assert stream_main(spec, args + extra) == 0
    elif script == "fusion.py":
        fusion.main(args)
    elif script == "tools/predict.py":
        predict.main(args + ["--device", "cpu"])
    else:
        raise AssertionError(f"the README runs an unknown script: {script}")


def test_the_readme_workflows_run_as_written(tmp_path, monkeypatch):
    commands = readme_commands()
    scripts = {shlex.split(c)[1] for c in commands}
    assert scripts >= {"tools/extract_frames_flow.py", "spatial_cnn.py", "motion_cnn.py"}
    assert scripts >= {"fusion.py", "tools/predict.py"}
    data = generate(tmp_path / "gen", 2, 1, (48, 32), (8, 8), seed=2)
    clip = next(c for c in data.clips if not c.train)
    classes = sorted(p.name for p in data.videos_dir.iterdir())
    monkeypatch.chdir(tmp_path)  # record/ and the outputs land here
    paths = {  # the README's paths -> the generated data, most specific first
        "data/UCF-101/Biking/v_Biking_g01_c01.avi": str(clip.path),
        "data/UCF-101/Biking": str(data.videos_dir / classes[0]),
        "data/UCF-101/Diving": str(data.videos_dir / classes[1]),
        "data/UCF-101": str(data.videos_dir),
        "data/ucfTrainTestlist": str(data.splits_dir),
        "my_clips": str(data.videos_dir),
    }
    for command in commands:
        run(command, paths)
    assert (tmp_path / "record" / "spatial" / "video_scores.npz").is_file()
    assert (tmp_path / "record" / "motion" / "video_scores.npz").is_file()
    assert (tmp_path / "predictions.csv").is_file() and (tmp_path / "biking.gif").is_file()
    assert (tmp_path / "record" / "mine_motion" / "video_scores.npz").is_file()
