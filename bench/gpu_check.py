"""Every CUDA path of the toolkit once, in one command, for the few minutes a GPU is lent.

    python bench/gpu_check.py --prepare bench/gpu_assets       # here: PyAV, OpenCV contrib, ../shared
    timeout 480 python bench/gpu_check.py --json gpu.json      # there: the GPU machine
    python bench/gpu_check.py --dry-run                        # the same checks, CPU, tiny sizes

The GPU machine has no network, no PyAV and no OpenCV TV-L1, so ``--prepare`` (run where they
are) writes what the checks need from real UCF101 clips of ../shared/data into a git-ignored
folder of the checkout, which travels with it: a few gray frame pairs at 340x256 with their
OpenCV TV-L1 flow, two clips for the extraction tool, and 19 RGB frames of one test video.
The GPU run imports neither PyAV nor cv2.optflow; a check that cannot run says why in its row.

Rows (bench/gpu_train.py, bench/gpu_rows.py): training of each stream (spatial and motion
ResNet-101, clip R(2+1)D-18 and Swin3D-T at 16 x 224 x 224, flow-clip R(2+1)D-18 on 2-channel flow
clips; the dry run ShuffleNet v2 x0.5 and MC3-18 at tiny sizes), built as a run builds it and
trained through the engine's own step (engine.loops.train_one_epoch: 2 batches accumulated,
clipping, GradScaler, parameter groups), at fp32/bf16/fp16 with and without --compile (samples per
second, loss, logits of the first step against fp32's on the same batch, peak GPU memory); the host
syncs of one optimizer step (on a GPU under torch.cuda.set_sync_debug_mode; budget 1, fp16's
GradScaler adds 1); the epoch turnover of the training loader, workers restarted and kept up; one
test video of 19 frames x 10 crops through evaluation; TV-L1 pairs/s at batch 1, 8, 32, 64 and its
correlation with OpenCV's flow; the extraction tool end to end; torchrun (NCCL on GPUs, gloo in the
dry run, whose two ranks are forked from this process) training with accumulation (DDP's no_sync)
and testing, its scores against the same checkpoint evaluated in one plain process. Checks run in
that order of need within ``--budget`` seconds (the compiled training rows last); what the budget
leaves out is listed as skipped. Every CUDA path was written without a GPU: unmeasured until one is
lent.
"""

import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from bench.gpu_rows import (  # noqa: E402
    EVAL_FRAMES,
    eval_row,
    extraction_row,
    result_row,
    skip_row,
    torchrun_rows,
    tvl1_rows,
)
from bench.gpu_train import train_rows, turnover_rows  # noqa: E402
from utils.cli import Parser  # noqa: E402
from utils.errors import UserError, run_cli  # noqa: E402

ASSETS = ROOT / "bench" / "gpu_assets"
PAIRS, CLIPS = 4, 2  # of the assets: gray frame pairs with their OpenCV flow, clips


# --- prepare (here) ----------------------------------------------------------------------------


def prepare(out: Path, shared: Path) -> None:
    """Real frames, their OpenCV flow and two clips from ../shared/data into ``out``."""
    import cv2

    from extraction.decode import decode_video
    from extraction.tvl1 import make_tvl1, to_gray

    clips = sorted((shared / "ucf101" / "UCF-101").rglob("*.avi"), key=lambda p: p.stat().st_size)
    if len(clips) < CLIPS:
        raise UserError(f"no UCF101 clips under {shared}/ucf101/UCF-101; give --shared DATA")
    out.mkdir(parents=True, exist_ok=True)
    video = decode_video(clips[0], short_side=256, max_frames=EVAL_FRAMES + 1)
    grays = [to_gray(f) for f in video.frames]
    solve = make_tvl1("quality")
    flows = [solve(grays[i], grays[i + 1]) for i in range(PAIRS)]
    np.savez_compressed(
        out / "pairs.npz",
        prev=np.stack(grays[:PAIRS]),
        next=np.stack(grays[1 : PAIRS + 1]),
        flow=np.stack(flows).astype(np.float32),
        video=clips[0].stem,
    )
    frames = out / "frames"
    frames.mkdir(exist_ok=True)
    for i, frame in enumerate(video.frames[:EVAL_FRAMES]):  # RGB from the decoder
        cv2.imwrite(str(frames / f"frame{i + 1:06d}.jpg"), frame[..., ::-1])
    (out / "clips").mkdir(exist_ok=True)
    for clip in clips[:CLIPS]:
        shutil.copyfile(clip, out / "clips" / clip.name)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"wrote {out}: {PAIRS} pairs of {clips[0].stem}, {EVAL_FRAMES} frames, {CLIPS} clips, "
          f"{size / 1e6:.1f} MB")  # fmt: skip


# --- running, the table and the JSON ------------------------------------------------------------


def run_checks(device, dry: bool, assets: Path, budget: float):
    """All rows in order of need; what would start past ``budget`` seconds is skipped."""
    start = time.perf_counter()
    plan = [
        ("train", lambda: train_rows(device, dry, compiled=False)),
        ("turnover", lambda: turnover_rows(device, dry)),
        ("evaluate", lambda: eval_row(device, dry, assets)),
        ("tvl1", lambda: tvl1_rows(device, dry, assets)),
        ("extract", lambda: [extraction_row(device, dry, assets)]),
        ("torchrun", lambda: torchrun_rows(device)),
        ("train", lambda: train_rows(device, dry, compiled=True)),
    ]
    rows = []
    for name, check in plan:
        if time.perf_counter() - start > budget:
            rows.append(skip_row(name, "all", f"past the --budget of {budget:g} s"))
            print(_line(rows[-1]), flush=True)
            continue
        try:
            for row in check():
                rows.append(row)
                print(_line(row), flush=True)
                if time.perf_counter() - start > budget:  # a row can take minutes (compiling)
                    rows.append(skip_row(name, "the rest", f"past the --budget of {budget:g} s"))
                    print(_line(rows[-1]), flush=True)
                    break
        except Exception as err:  # one broken path must not hide the others' rows
            rows.append(result_row(name, "-", False, "error", f"{type(err).__name__}: {err}"[:300]))
            print(_line(rows[-1]), flush=True)
    return rows


def _line(row) -> str:
    status = {True: "ok", False: "FAIL", None: "skip"}[row["ok"]]
    return f"| {row['check']} | {row['setting']} | {status} | {row['result']} | {row['note']} |"


def parse_args(argv):
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepare", type=Path, metavar="DIR", help="write the assets to DIR and stop")
    p.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data",
                   help="the data folder --prepare reads (default: ../shared/data)")  # fmt: skip
    p.add_argument("--assets", type=Path, default=ASSETS, help="what --prepare wrote")
    p.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (about 15 s)")
    p.add_argument("--device", default=None, help="default: cuda (cpu with --dry-run)")
    p.add_argument("--budget", type=float, default=420.0, help="seconds before checks are skipped")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the rows here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.prepare:
        prepare(args.prepare, args.shared)
        return 0
    import torch

    from engine.device import resolve_device

    device = resolve_device(args.device or ("cpu" if args.dry_run else "cuda"))
    if device.type == "cpu" and not args.dry_run:
        raise UserError("no --device cuda: pass --dry-run to run the checks on the CPU")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    else:
        torch.set_num_threads(min(2, torch.get_num_threads()))
    print(f"gpu_check on {name}, torch {torch.__version__}{' (dry run)' if args.dry_run else ''}")
    print("| check | setting | status | result | note |\n|---|---|---|---|---|", flush=True)
    started = time.perf_counter()
    rows = run_checks(device, args.dry_run, args.assets, args.budget)
    seconds = time.perf_counter() - started
    failed = [r for r in rows if r["ok"] is False]
    print(f"{len(rows)} rows, {len(failed)} failed, {seconds:.0f} s")
    if args.json:
        report = dict(device=name, torch=torch.__version__, dry_run=args.dry_run,
                      date=time.strftime("%Y-%m-%d"), seconds=seconds, rows=rows)  # fmt: skip
        args.json.write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
