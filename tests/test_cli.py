"""The command lines as a user meets them: help text, typos, start-up and quiet evaluation."""

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from engine.cli import build_parser
from engine.streams import MOTION, SPATIAL
from utils.cli import Parser
from utils.errors import UserError
from utils.metrics import accuracy_report

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ["spatial_cnn.py", "motion_cnn.py", "clip_cnn.py", "fusion.py", "tools/predict.py"]
SCRIPTS += ["tools/extract_frames_flow.py", "tools/demo.py", "tools/synthetic_actions.py"]


def test_a_mistyped_option_gets_the_closest_one_suggested():
    with pytest.raises(UserError, match=r"--crop-sise.*did you mean --crop-size\?"):
        build_parser(SPATIAL).parse_args(["--crop-sise", "3"])
    with pytest.raises(UserError, match="did you mean --stack-length"):
        build_parser(MOTION).parse_args(["--stack-lenght", "5"])


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_each_default_once_and_answers_without_torch(script):
    code = (
        "import runpy, sys; sys.argv = [sys.argv[1], '--help']\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO TORCH')"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, script], cwd=ROOT, capture_output=True, text=True
    ).stdout
    assert "usage:" in out and out.strip().endswith("NO TORCH"), out[-300:]
    assert "(default: None)" not in out
    assert not re.search(r"\(default: [^)]*\)\s+\(default:", out), "a default shown twice"


def test_a_parser_has_debug_and_hides_off_switch_defaults():
    parser = Parser(prog="x")
    parser.add_argument("--flag", action="store_true", help="a switch")
    text = parser.format_help()
    assert "--debug, --no-debug" in text and "(default: False)" not in text


def test_accuracy_on_a_few_classes_of_many_warns_nothing():
    scores = np.eye(10, dtype=np.float32)[[0, 3, 3, 7]]  # predictions of classes not in labels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = accuracy_report(scores, np.array([0, 3, 2, 7]))
    assert report["top1"] == 75.0 and report["mean_class"] == pytest.approx(100 * 3 / 4)


def test_default_workers_and_threads_count_cores_where_there_is_no_affinity(monkeypatch):
    """macOS and Windows have no os.sched_getaffinity: the defaults count every core there."""
    import os

    from engine.config import default_workers
    from utils.cores import usable_cores

    assert usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert usable_cores() == 6 and default_workers() == 3
