"""The wait between one training epoch's last batch and the next epoch's first, with the loader's
workers restarted each epoch (as before) and kept up (``persistent_workers``, as training runs).

    python bench/turnover_bench.py [--workers 2] [--epochs 4] [--videos 60]

It writes a tiny frame dataset (bench/tiny_data.py) in a temporary folder and iterates the
spatial stream's training loader as engine.data builds it; the figure per mode is the median
turnover over the epochs after the first.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from utils.cli import Parser  # noqa: E402
from utils.errors import run_cli  # noqa: E402


def turnovers(loader, epochs: int) -> list[float]:
    """Seconds from each epoch's last batch to the next epoch's first."""
    gaps, last = [], None
    for epoch in range(1, epochs + 1):
        loader.sampler.set_epoch(epoch)
        for i, _ in enumerate(loader):
            if i == 0 and last is not None:
                gaps.append(time.perf_counter() - last)
        last = time.perf_counter()
    return gaps


def measure(workers: int, epochs: int, videos: int, device=None) -> dict:
    """The median turnover (seconds) with workers restarted each epoch and kept up, of the
    spatial stream's training loader over a tiny dataset of ``videos`` (3 classes) written to a
    temporary folder; ``device``: where the batches go (pinned memory on CUDA)."""
    import torch

    from bench.tiny_data import write_frame_dataset
    from engine.config import make_options
    from engine.data import build_datasets, load_run_split, make_loader
    from engine.streams import SPATIAL

    device = device or torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        root = write_frame_dataset(Path(tmp) / "data", train_per_class=max(1, videos // 3))
        options = make_options(SPATIAL, data_root=str(root), record_dir=str(Path(tmp) / "r"),
                               workers=workers, batch_size=8, crop_size=112)  # fmt: skip
        train = build_datasets(SPATIAL, options, load_run_split(options))["train"]
        figures = {}
        for mode, reused in (("restarted", False), ("persistent", True)):
            loader = make_loader(train, options, device, train=True, seed=0, reused=reused)
            figures[mode] = statistics.median(turnovers(loader, epochs))
            del loader
    return figures


def main(argv=None) -> dict:
    parser = Parser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--videos", type=int, default=60, help="training videos (3 classes)")
    args = parser.parse_args(argv)
    figures = measure(args.workers, args.epochs, args.videos)
    for mode, seconds in figures.items():
        print(f"epoch turnover, workers {mode}: {seconds * 1000:.0f} ms ({args.workers} workers)")
    return figures


if __name__ == "__main__":
    run_cli(main)
