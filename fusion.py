"""Fuse the video-level scores of two or more streams by a weighted average.

    python fusion.py --spatial record/spatial/video_scores.npz --motion record/motion/video_scores.npz
    python fusion.py --spatial S.npz --motion M.npz --stream clip=record/clip/video_scores.npz \\
        --weights 1 1.5 1

Reads this toolkit's ``video_scores.npz`` and the reference implementation's pickles (labels for
those come from --splits-dir/--split). Prints top-1, top-5 and mean class accuracy of each stream
and of the fusion on the same videos; --out writes the fused scores and their reports, --json
the numbers. Without --out nothing but --json is written. The files of one run are written as a
unit (write_outputs) by one run at a time (a lock per file).
"""

import argparse
import os
import shutil
from pathlib import Path

from dataloader.splits import DATASETS
from engine.cli import add_fusion_arguments
from engine.late_fusion import (
    check_classes,
    check_streams,
    format_results,
    fuse_files,
    load_score_file,
    tune_weights,
)
from utils.atomic import DiskFull, disk_full, tmp_name, write_json
from utils.cli import Parser
from utils.errors import UserError, run_cli
from utils.faults import fault_point
from utils.outputs import locked_outputs, on_full_disk
from utils.reports import MORE_REPORTS, REPORTS
from utils.scores import ScoreFile, load_npz, save_scores
from utils.video_names import video_key


def get_args(argv=None) -> argparse.Namespace:
    parser = Parser(
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--spatial", type=Path, help="spatial stream score file")
    parser.add_argument("--motion", type=Path, help="motion stream score file")
    parser.add_argument(
        "--stream",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a further stream's score file, e.g. clip=record/clip/video_scores.npz (repeatable)",
    )
    add_fusion_arguments(parser)
    parser.add_argument(
        "--out",
        type=Path,
        help="write the fused scores here (npz) and their reports beside it; default: write nothing",
    )
    parser.add_argument("--json", type=Path, help="write the accuracy table here as JSON")
    parser.add_argument(
        "--allow-partial",
        action=argparse.BooleanOptionalAction,
        default=False,
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
        "--dataset", default="ucf101", choices=DATASETS, help="dataset of --splits-dir"
    )
    parser.add_argument(
        "--tune-weights",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="choose --weights (a 0.1 grid over the simplex) and, unless --softmax/--no-softmax "
        "is given, the softmax setting by the best top-1 on validation score files: "
        "val_scores.npz beside each test file (runs with --val-groups or a val.txt write it) or "
        "--val NAME=PATH; the test files are only fused with the choice",
    )
    parser.add_argument(
        "--val",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a stream's validation score file for --tune-weights (default: val_scores.npz "
        "beside its test file)",
    )
    parser.add_argument(
        "--force",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="fuse files whose stored stream differs from their option (e.g. two spatial runs)",
    )
    return parser.parse_args(argv)


def _named_paths(items: list[str], option: str) -> dict[str, Path]:
    paths = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UserError(f"{option} {item!r}: give NAME=PATH, e.g. clip=record/clip/scores.npz")
        if name in paths:
            raise UserError(f"{option} {item!r}: the stream {name!r} is given twice")
        paths[name] = Path(path)
    return paths


def weights_file(args) -> Path | None:
    """Where --tune-weights saves its choice: beside --out, else --json; with neither the
    choice is printed only (nothing is written where the user did not say)."""
    beside = args.out if args.out is not None else args.json
    return beside.parent / "fusion_weights.json" if beside is not None else None


def tuned(args, paths: dict, streams: dict) -> dict:
    """--tune-weights: weights and softmax chosen on the validation files alone (the record
    written_outputs saves)."""
    if args.weights is not None:
        raise UserError("--tune-weights chooses the weights: leave --weights out")
    val_paths = {name: path.parent / "val_scores.npz" for name, path in paths.items()}
    given = _named_paths(args.val, "--val")
    unknown = sorted(set(given) - set(paths))
    if unknown:
        raise UserError(f"--val {unknown[0]}=...: no such stream (streams: {', '.join(paths)})")
    val_paths.update(given)
    missing = [f"{n} ({p})" for n, p in val_paths.items() if not p.is_file()]
    if missing:
        raise UserError(
            f"--tune-weights needs validation scores; none for {', '.join(missing)}: train with "
            "--val-groups N (or a custom val.txt), or give --val NAME=PATH"
        )
    val = {name: load_npz(path) for name, path in val_paths.items()}
    test_keys = {video_key(v) for f in streams.values() for v in f.videos}
    for score in val.values():
        shared = [v for v in score.videos if video_key(v) in test_keys]
        if shared:
            raise UserError(
                f"{score.path} holds {len(shared)} test videos (e.g. {shared[0]}); weights "
                "must be tuned on validation videos only: give the validation score file"
            )
    choices = (False, True) if args.softmax is None else (args.softmax,)
    choice = tune_weights(list(val.values()), choices, args.allow_partial)
    shown = ", ".join(f"{n} {w:g}" for n, w in zip(paths, choice["weights"], strict=True))
    v = choice["validation"]
    print(
        f"tuned on {v['videos']} validation videos: weights {shown}, softmax "
        f"{'on' if choice['softmax'] else 'off'} (validation top-1 {v['top1']:.2f}%)"
    )
    return {
        "streams": list(paths),
        **choice,
        "validation_files": [str(p) for p in val_paths.values()],
    }


def write_outputs(args, fused: ScoreFile, results: dict, choice: dict | None) -> list[Path]:
    """Fusion's files as one unit, never mixed with an earlier run's: those of the earlier run
    that this one writes are removed first (the fused npz is replaced last of them, atomically),
    then the npz, its reports, the tuned weights and the JSON last, each written whole. A kill
    leaves files of one run; the JSON, when asked for, appears only once all are in place."""
    out = args.out
    names = (*REPORTS, *MORE_REPORTS)  # what utils.reports.write_reports may write
    reports = [] if out is None else [out.with_name(f"{out.stem}_{name}") for name in names]
    weights = weights_file(args) if choice is not None else None
    for old in [*reports, weights, args.json]:
        if old is not None:
            old.unlink(missing_ok=True)
    written = []
    with on_full_disk("the score files fused are untouched"):
        if args.out is not None:
            save_scores(args.out, videos=fused.videos, labels=fused.labels,
                        classes=fused.classes, scores=fused.scores, stream="fused",
                        split=fused.split, epoch=-1, kind=fused.kind)  # fmt: skip
            written += [args.out, *_write_reports(args.out)]
        if weights is not None:
            written.append(write_json(weights, choice))
        if args.json is not None:
            written.append(write_json(args.json, results))
    return written


def _write_reports(out: Path) -> list[Path]:
    """The reports of the fused file, written in a folder of their own and moved beside it."""
    from utils.reports import write_reports  # late: matplotlib takes seconds to import

    folder = tmp_name(out).with_suffix(".tmpdir")  # removed by utils.atomic.remove_stale_tmp
    try:
        written = write_reports(load_npz(out), folder, prefix=f"{out.stem}_")
        fault_point("fusion.reports")
        moved = []
        for path in written:
            moved.append(out.parent / path.name)
            os.replace(path, moved[-1])
    except OSError as err:
        if disk_full(err):
            raise DiskFull(f"the disk is full: could not write the reports of {out}") from err
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return moved


def main(argv=None) -> dict:
    args = get_args(argv)
    paths = {name: getattr(args, name) for name in ("spatial", "motion") if getattr(args, name)}
    for name, path in _named_paths(args.stream, "--stream").items():
        if name in paths or name == "fused":
            raise UserError(f"--stream {name}={path}: the stream {name!r} is given twice")
        paths[name] = path
    if len(paths) < 2:
        raise UserError("give at least two score files: --spatial, --motion and/or --stream N=P")
    if args.weights is not None and len(args.weights) != len(paths):
        raise UserError(
            f"--weights: {len(args.weights)} given for {len(paths)} streams "
            f"({', '.join(paths)}); give one each, in that order"
        )
    outputs = {args.out: "--out", args.json: "--json"}
    if args.tune_weights:
        outputs[weights_file(args)] = "--out"
    with locked_outputs(outputs):
        return _fuse(args, paths)


def _fuse(args, paths: dict) -> dict:
    splits = {"splits_dir": args.splits_dir, "split": args.split, "dataset": args.dataset}
    streams = {name: load_score_file(path, **splits) for name, path in paths.items()}
    files = list(streams.values())
    check_streams(streams, args.force)
    check_classes(files)
    choice = tuned(args, paths, streams) if args.tune_weights else None
    if choice is not None:
        args.weights, args.softmax = choice["weights"], choice["softmax"]
    args.softmax = bool(args.softmax)
    results, fused = fuse_files(streams, args.weights, args.softmax, args.allow_partial)
    how = "softmax probabilities (the fused file holds their log)" if args.softmax else "scores"
    given = args.weights or [1.0] * len(streams)
    weights = ", ".join(f"{name} {w:g}" for name, w in zip(streams, given, strict=True))
    print(f"fused {how} with weights {weights}")
    print(format_results(results, streams))
    for path in write_outputs(args, fused, results, choice):
        print(f"wrote {path}")
    return results


if __name__ == "__main__":
    run_cli(main)
