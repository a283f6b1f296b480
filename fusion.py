"""Fuse the spatial and motion streams' video-level scores by a weighted average.

    python fusion.py --spatial record/spatial/video_scores.npz --motion record/motion/video_scores.npz

Reads this toolkit's ``video_scores.npz`` and the reference implementation's pickles (labels for
those come from --splits-dir/--split). Prints top-1, top-5 and mean class accuracy of each stream
and of the fusion on the same videos; --out writes the fused scores and their reports, --json
the numbers. Without --out nothing but --json is written.
"""

import argparse
from pathlib import Path

import numpy as np
from scipy.special import log_softmax, logsumexp

from dataloader.splits import DATASETS, video_key
from utils.atomic import write_json
from utils.errors import UserError, run_cli
from utils.metrics import accuracy_report
from utils.reports import write_reports
from utils.scores import ScoreFile, load_scores, save_scores


def add_fusion_arguments(parser: argparse.ArgumentParser) -> None:
    """--weights and --softmax, shared with tools/predict.py so both fuse the same way."""
    parser.add_argument(
        "--weights",
        nargs=2,
        type=float,
        default=(1.0, 1.0),
        metavar=("WS", "WM"),
        help="weights of the spatial and motion scores in the average",
    )
    parser.add_argument(
        "--softmax",
        action="store_true",
        help="turn each stream's scores into probabilities before averaging",
    )


def get_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--spatial", required=True, type=Path, help="spatial stream score file")
    parser.add_argument("--motion", required=True, type=Path, help="motion stream score file")
    add_fusion_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        help="write the fused scores here (npz) and their reports beside it; default: write nothing",
    )
    parser.add_argument("--json", type=Path, help="write the accuracy table here as JSON")
    parser.add_argument(
        "--allow-partial",
        action="store_true",
        help="fuse only the videos present in both files instead of refusing differing video sets",
    )
    parser.add_argument(
        "--splits-dir",
        type=Path,
        help="split files giving labels for reference-implementation pickles (e.g. ucfTrainTestlist)",
    )
    parser.add_argument(
        "--split", type=int, help="split (1-3) a reference-implementation pickle was evaluated on"
    )
    parser.add_argument(
        "--dataset",
        default="ucf101",
        choices=DATASETS,
        help="dataset of --splits-dir (default: ucf101)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one line")
    return parser.parse_args(argv)


def check_classes(spatial: ScoreFile, motion: ScoreFile) -> None:
    if len(spatial.classes) != len(motion.classes):
        raise UserError(
            f"class counts differ: {spatial.path} has {len(spatial.classes)} classes, "
            f"{motion.path} has {len(motion.classes)}; both streams must be trained on one dataset"
        )
    for i, (a, b) in enumerate(zip(spatial.classes, motion.classes, strict=True)):
        if a.lower() != b.lower():
            raise UserError(
                f"class names differ at index {i}: {a!r} in {spatial.path}, {b!r} in {motion.path}; "
                "both streams must use the same classInd order"
            )


def match_videos(
    spatial: ScoreFile, motion: ScoreFile, allow_partial: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices into each file of the videos they share, in the spatial file's order."""
    motion_rows = {video_key(v): i for i, v in enumerate(motion.videos)}
    spatial_keys = {video_key(v) for v in spatial.videos}
    only_spatial = [v for v in spatial.videos if video_key(v) not in motion_rows]
    only_motion = [v for v in motion.videos if video_key(v) not in spatial_keys]
    both = len(spatial) - len(only_spatial)
    if only_spatial or only_motion:
        detail = (
            f"{len(only_spatial)} of {spatial.path}'s {len(spatial)} videos are missing from "
            f"{motion.path}{_examples(only_spatial)}, {len(only_motion)} of its {len(motion)} "
            f"are missing from {spatial.path}{_examples(only_motion)}"
        )
        if not both:
            raise UserError(f"the score files share no video: {detail}")
        if not allow_partial:
            raise UserError(
                f"video sets differ: {detail}; pass --allow-partial to fuse the {both} in both"
            )
        print(f"note: --allow-partial: fusing the {both} videos in both files; {detail}")
    keys = [video_key(v) for v in spatial.videos]
    s_rows = np.asarray([i for i, k in enumerate(keys) if k in motion_rows], dtype=np.int64)
    m_rows = np.asarray([motion_rows[keys[i]] for i in s_rows], dtype=np.int64)
    differ = np.flatnonzero(spatial.labels[s_rows] != motion.labels[m_rows])
    if len(differ):
        names = [spatial.videos[s_rows[k]] for k in differ[:3]]
        raise UserError(
            f"labels differ for {len(differ)} videos (e.g. {', '.join(names)}) between "
            f"{spatial.path} and {motion.path}; were they evaluated on different split files?"
        )
    return s_rows, m_rows


def _examples(names: list[str]) -> str:
    return f" (e.g. {', '.join(names[:3])})" if names else ""


def fuse(spatial: np.ndarray, motion: np.ndarray, weights, use_softmax: bool) -> np.ndarray:
    """Weighted average of the two streams' scores, or with use_softmax of their probabilities.

    The average of probabilities is returned as its logarithm, computed in log space: softmax
    of the reference's sharp scores (sums of 19 logits) underflows to exact zeros, even in
    float64, and those ties would change top-5. Softmax of the result gives the probabilities.
    """
    ws, wm = weights
    if ws < 0 or wm < 0 or ws + wm <= 0:
        raise UserError(f"--weights must be non-negative with a positive sum, got {ws:g} {wm:g}")
    spatial, motion = spatial.astype(np.float64), motion.astype(np.float64)
    if not use_softmax:
        return (ws * spatial + wm * motion) / (ws + wm)
    logs = np.stack([log_softmax(spatial, axis=1), log_softmax(motion, axis=1)])
    return logsumexp(logs, axis=0, b=np.array([ws, wm])[:, None, None]) - np.log(ws + wm)


def format_table(results: dict) -> str:
    lines = [f"{'stream':<8} {'top-1':>7} {'top-5':>7} {'mean class':>10} {'videos':>7}"]
    for name, r in results.items():
        lines.append(
            f"{name:<8} {r['top1']:7.2f} {r['top5']:7.2f} {r['mean_class']:10.2f} {r['videos']:7d}"
        )
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = get_args(argv)
    splits = {"splits_dir": args.splits_dir, "split": args.split, "dataset": args.dataset}
    spatial = load_scores(args.spatial, **splits)
    motion = load_scores(args.motion, **splits)
    check_classes(spatial, motion)
    s_rows, m_rows = match_videos(spatial, motion, args.allow_partial)
    labels = spatial.labels[s_rows]
    s_scores, m_scores = spatial.scores[s_rows], motion.scores[m_rows]
    fused = fuse(s_scores, m_scores, args.weights, args.softmax)
    results = {
        "spatial": accuracy_report(s_scores, labels),
        "motion": accuracy_report(m_scores, labels),
        "fused": accuracy_report(fused, labels),
    }
    how = "softmax probabilities (the fused file holds their log)" if args.softmax else "scores"
    ws, wm = args.weights
    print(f"fused {how} with weights spatial {ws:g}, motion {wm:g}")
    print(format_table(results))
    if args.out is not None:
        videos = [spatial.videos[i] for i in s_rows]
        save_scores(
            args.out,
            videos=videos,
            labels=labels,
            classes=spatial.classes,
            scores=fused,
            stream="fused",
            split=spatial.split,
            epoch=-1,
        )
        score = ScoreFile(
            videos, labels, spatial.classes, fused, "fused", spatial.split, -1, args.out
        )
        reports = write_reports(score, args.out.parent, prefix=f"{args.out.stem}_")
        print(f"wrote {args.out}")
        for path in reports:
            print(f"wrote {path}")
    if args.json is not None:
        write_json(args.json, results)
        print(f"wrote {args.json}")
    return results


if __name__ == "__main__":
    run_cli(main)
