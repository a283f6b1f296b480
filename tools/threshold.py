"""Choose predict's and live's --threshold: the videos each threshold keeps, and their accuracy.

    python tools/threshold.py record/spatial/val_scores.npz record/motion/val_scores.npz
    python tools/threshold.py SCORES.npz [MORE.npz ...] [--weights 1 1.5] [--softmax] \\
        [--thresholds 0.3 0.5 0.7]

Reads one score file, or fuses several as fusion.py and predict fuse them (same --weights and
--softmax), and prints for each threshold P the videos whose fused top probability is at least P
(kept; the others would be labelled 'unknown') and the top-1 accuracy on those. Give validation
scores (val_scores.npz, written by training with --val-groups): P chosen on the test set would
be fitted to it. Writes nothing.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from engine.cli import add_fusion_arguments
from utils.cli import Parser
from utils.errors import UserError, run_cli
from utils.tables import format_table

THRESHOLDS = [round(0.05 * i, 2) for i in range(20)]  # 0, 0.05, ..., 0.95


def get_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "scores", type=Path, nargs="+", metavar="SCORES.npz", help="score files (fused if many)"
    )
    add_fusion_arguments(parser)
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="fuse only the videos present in every file instead of refusing differing sets",
    )
    parser.add_argument(
        "--thresholds",
        nargs="+",
        type=float,
        metavar="P",
        default=THRESHOLDS,
        help="thresholds to show (default: 0 to 0.95 by 0.05)",
    )
    return parser.parse_args(argv)


def fused_probabilities(args) -> tuple[np.ndarray, np.ndarray, int]:
    """The (fused) probabilities of the score files' videos, their labels and their number."""
    from engine.late_fusion import fuse_files
    from utils.metrics import probabilities
    from utils.scores import is_npz, load_npz

    for path in args.scores:
        if not path.is_file():
            raise UserError(f"score file not found: {path}")
        if not is_npz(path):
            raise UserError(
                f"{path} is not a video_scores.npz: give one (fusion.py --out writes one from "
                "reference-implementation pickles)"
            )
    files = [load_npz(path) for path in args.scores]
    if len(files) == 1:
        if args.weights is not None:
            raise UserError("--weights: give two or more score files to fuse")
        return probabilities(files[0].scores, files[0].kind), files[0].labels, 1
    if args.weights is not None and len(args.weights) != len(files):
        raise UserError(f"--weights: {len(args.weights)} given for {len(files)} files; one each")
    named = {f"{i}:{f.stream}": f for i, f in enumerate(files)}
    _, fused = fuse_files(named, args.weights, bool(args.softmax), args.allow_partial)
    return probabilities(fused.scores, fused.kind), fused.labels, len(files)


def main(argv=None) -> list[tuple]:
    args = get_args(argv)
    from utils.unknown import coverage

    if any(not 0.0 <= p <= 1.0 for p in args.thresholds):
        raise UserError("--thresholds: give probabilities from 0 to 1")
    probs, labels, count = fused_probabilities(args)
    rows = coverage(probs, labels, sorted(args.thresholds))
    what = "fused top probability" if count > 1 else "top probability"
    print(f"{len(labels)} videos; kept: {what} at least P (the others: unknown)")
    cells = [
        [f"{p:g}", n, f"{share:.1f}%", "-" if acc is None else f"{acc:.2f}%"]
        for p, n, share, acc in rows
    ]
    print(format_table(["P", "kept", "kept %", "top-1 of kept"], cells, {0, 1, 2, 3}))
    return rows


if __name__ == "__main__":
    run_cli(main)
