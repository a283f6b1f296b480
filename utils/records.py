"""Per-epoch records of a run: one CSV per phase (train, val, test) and TensorBoard scalars.

A resumed run keeps the rows of the epochs its checkpoint covers and drops later ones, which a
killed run may have written after its last checkpoint; TensorBoard's ``purge_step`` does the same
for the event files.
"""

import csv
import io
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from utils.atomic import write_text


class CsvLog:
    """Rows of one phase, one per evaluation, in ``<record_dir>/<phase>.csv``."""

    def __init__(self, path: Path, fields: list[str], resume_epoch: int | None):
        self.path = path
        self.fields = ["epoch", *fields]
        kept = []
        if resume_epoch is not None and path.is_file():
            kept = [row for row in self._rows() if int(row["epoch"]) <= resume_epoch]
        self._rewrite(kept)
        self.epochs = {int(row["epoch"]) for row in kept}

    def _rows(self) -> list[dict]:
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))

    def _rewrite(self, rows: list[dict]) -> None:
        """The header and ``rows``, replacing the file whole (a kill keeps the old rows)."""
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, self.fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, text.getvalue())

    def write(self, epoch: int, metrics: dict) -> None:
        """Append the epoch's row; one already there (a test redone after a kill) is replaced."""
        if epoch in self.epochs:
            self._rewrite([row for row in self._rows() if int(row["epoch"]) != epoch])
        self.epochs.add(epoch)
        row = {"epoch": epoch}
        row.update({k: _fmt(v) for k, v in metrics.items()})
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)


EVAL_FIELDS = [
    "epoch",
    "checkpoint",
    "test",
    "loss",
    "top1",
    "top5",
    "mean_class",
    "seconds",
    "scores",
]


def append_evaluation(path, row: dict) -> Path:
    """One row per ``--evaluate`` run in ``eval.csv`` (EVAL_FIELDS), created with its header;
    earlier rows are kept, so every evaluation of a run stays listed."""
    path = Path(path)
    new = not path.is_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, EVAL_FIELDS, extrasaction="ignore")
        if new:
            writer.writeheader()
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    return path


def _fmt(value):
    return f"{value:.6g}" if isinstance(value, float) else value


class Records:
    """train.csv, test.csv (and val.csv with a hold-out) plus TensorBoard events in one folder."""

    FIELDS = {
        "train": ["loss", "top1", "top5", "lr", "seconds"],
        "val": ["loss", "top1", "top5", "mean_class", "seconds"],
        "test": ["loss", "top1", "top5", "mean_class", "seconds"],
    }

    def __init__(self, record_dir, phases=("train", "test"), resume_epoch: int | None = None):
        self.dir = Path(record_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.logs = {p: CsvLog(self.dir / f"{p}.csv", self.FIELDS[p], resume_epoch) for p in phases}
        purge = None if resume_epoch is None else resume_epoch + 1
        self.writer = SummaryWriter(log_dir=str(self.dir), purge_step=purge)

    def log(self, phase: str, epoch: int, metrics: dict) -> None:
        self.logs[phase].write(epoch, metrics)
        for key in self.FIELDS[phase]:
            if key != "seconds" and key in metrics:
                self.writer.add_scalar(f"{phase}/{key}", metrics[key], epoch)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
