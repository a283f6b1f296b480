"""How fast every entry point answers ``--help`` and a mistyped option (target: under 1 s).

    python bench/startup_bench.py [--repeat 3]

Each command runs in a fresh interpreter, as a user types it; the figure is the median wall time
of ``--repeat`` runs. Options are parsed before torch, OpenCV and PyAV are imported, so neither
case should pay for them.
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.cli import Parser  # noqa: E402
from utils.errors import run_cli  # noqa: E402

ENTRY_POINTS = [
    "spatial_cnn.py",
    "motion_cnn.py",
    "clip_cnn.py",
    "fusion.py",
    "tools/predict.py",
    "tools/extract_frames_flow.py",
    "tools/demo.py",
    "tools/synthetic_actions.py",
]


def seconds(argv: list[str], repeat: int) -> tuple[float, int]:
    times, code = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True)
        times.append(time.perf_counter() - start)
        code = proc.returncode
    return statistics.median(times), code


def main(argv=None) -> int:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    args = parser.parse_args(argv)
    print(f"{'entry point':<30} {'--help':>8} {'typo':>8}")
    worst = 0.0
    for script in ENTRY_POINTS:
        help_s, help_code = seconds([sys.executable, script, "--help"], args.repeat)
        typo_s, typo_code = seconds([sys.executable, script, "--hepl"], args.repeat)
        worst = max(worst, help_s, typo_s)
        flags = (
            "" if (help_code, typo_code) == (0, 2) else f"  (exit codes {help_code}, {typo_code})"
        )
        print(f"{script:<30} {help_s:7.2f}s {typo_s:7.2f}s{flags}")
    print(f"slowest: {worst:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
