"""Per-video result files that a batch fills row by row, so a crash or a bad video loses nothing.

The CSV is appended to (and synced) as each video is done; the JSON list is rewritten atomically
after each. Opening them again reads the rows already there: videos with a result in every file
are skipped, a failed one is tried again (its old row is dropped), and so is one whose row a kill
left half-written or in the CSV alone: a rerun after a kill at any moment leaves each video once.
Call it holding the files' locks (utils.outputs.locked_outputs): one writer each.
"""

import csv
import io
import json
import os
from contextlib import suppress

from utils.atomic import DiskFull, disk_full, write_json, write_text
from utils.errors import UserError
from utils.faults import fault_point
from utils.outputs import on_full_disk


class ResultFiles:
    """An optional CSV with a fixed ``header`` (its first cell "video", its last "error") and an
    optional JSON list of dicts with a "video" key (and "error" for a failure). Videos in ``redo``
    are done again (their rows dropped)."""

    def __init__(self, csv_path, json_path, header: list[str], redo: set[str] = frozenset()):
        self.csv_path, self.json_path, self.header = csv_path, json_path, header
        records = _first_of_each(self._read_json())
        rows = _first_of_each(self._read_csv())
        done = [{r["video"] for r in rows if not r["error"]}] if csv_path else []
        if json_path:
            done.append({r["video"] for r in records if not r.get("error")})
        self.done = (set.intersection(*done) if done else set()) - redo  # in every file given
        self.records = [r for r in records if r["video"] in self.done]
        kept = [[r[h] for h in header] for r in rows if r["video"] in self.done]
        self.rows = len(kept)
        with self._kept_on_full_disk():
            if json_path is not None and json_path.is_file():
                write_json(json_path, self.records)
            if csv_path is not None:  # the kept rows, then one appended per video
                write_text(csv_path, _csv_text([header, *kept]))

    def _read_csv(self) -> list[dict]:
        if self.csv_path is None or not self.csv_path.is_file():
            return []
        with open(self.csv_path, newline="", encoding="utf-8") as file:
            text = file.read()
        if not text.endswith("\n"):  # a row a kill cut short
            text = text[: text.rfind("\n") + 1]
        lines = list(csv.reader(io.StringIO(text)))
        if lines and lines[0] != self.header:
            raise UserError(
                f"{self.csv_path} holds other columns (other streams or --top): give another "
                "--csv, or delete it to start again"
            )
        return [dict(zip(self.header, line, strict=True)) for line in lines[1:]
                if len(line) == len(self.header)]  # fmt: skip

    def _read_json(self) -> list[dict]:
        if self.json_path is None or not self.json_path.is_file():
            return []
        try:
            records = json.loads(self.json_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise UserError(
                f"{self.json_path} is not a JSON list of results: give another --json, or "
                "delete it to start again"
            ) from None
        records = records if isinstance(records, list) else [records]
        return [r for r in records if isinstance(r, dict) and "video" in r]

    def add(self, cells: list[str], record: dict) -> None:
        """One video's CSV row (cells in header order) and JSON record, written at once."""
        with self._kept_on_full_disk():
            if self.csv_path is not None:
                self._append(_csv_text([cells]).encode("utf-8"))
            if self.json_path is not None:
                write_json(self.json_path, [*self.records, record])
        self.records.append(record)
        self.rows += 1

    def _append(self, data: bytes) -> None:
        """Append a row whole or not at all: a failure cuts the file back to its old end."""
        fd = os.open(self.csv_path, os.O_WRONLY | os.O_APPEND)
        try:
            end = os.fstat(fd).st_size
            try:
                _write_all(fd, data[:-1])
                fault_point("predict.csv_row")  # the row is there, not yet its newline
                _write_all(fd, data[-1:])
                os.fsync(fd)
            except BaseException as err:
                with suppress(OSError):
                    os.ftruncate(fd, end)
                if disk_full(err):
                    raise DiskFull(f"the disk is full: could not write {self.csv_path}") from err
                raise
        finally:
            os.close(fd)

    def _kept_on_full_disk(self):
        done = "1 video done before is" if self.rows == 1 else f"{self.rows} videos done before are"
        return on_full_disk(f"the {done} kept")


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _first_of_each(rows: list[dict]) -> list[dict]:
    """One row per video (the first): files written before runs were locked may hold two."""
    seen = set()
    return [r for r in rows if not (r["video"] in seen or seen.add(r["video"]))]


def _csv_text(rows: list[list]) -> str:
    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()
