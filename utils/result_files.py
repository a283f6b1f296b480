"""Per-video result files that a batch fills row by row, so a crash or a bad video loses nothing.

The CSV is appended to (and flushed) as each video is done; the JSON list is rewritten atomically
after each. Opening them again reads the rows already there: videos with a result are skipped, a
failed one is tried again (its old row is dropped), a row cut short by a kill is dropped too.
"""

import csv
import json
import os

from utils.atomic import write_json, write_text
from utils.errors import UserError


class ResultFiles:
    """An optional CSV with a fixed ``header`` (its first cell "video", its last "error") and an
    optional JSON list of dicts with a "video" key (and "error" for a failure). Videos in ``redo``
    are done again (their rows dropped)."""

    def __init__(self, csv_path, json_path, header: list[str], redo: set[str] = frozenset()):
        self.csv_path, self.json_path, self.header = csv_path, json_path, header
        self.records = self._read_json()
        rows = self._read_csv()
        done = [{r["video"] for r in rows if not r["error"]}] if csv_path else []
        if json_path:
            done.append({r["video"] for r in self.records if not r.get("error")})
        self.done = (set.intersection(*done) if done else set()) - redo  # in every file given
        self.records = [r for r in self.records if r["video"] in self.done]
        if json_path is not None and json_path.is_file():
            write_json(json_path, self.records)
        if csv_path is not None:  # the kept rows, then one appended per video
            kept = [[r[h] for h in header] for r in rows if r["video"] in self.done]
            write_text(csv_path, _csv_text([header, *kept]))

    def _read_csv(self) -> list[dict]:
        if self.csv_path is None or not self.csv_path.is_file():
            return []
        with open(self.csv_path, newline="", encoding="utf-8") as file:
            lines = list(csv.reader(file))
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
        return records if isinstance(records, list) else [records]

    def add(self, cells: list[str], record: dict) -> None:
        """One video's CSV row (cells in header order) and JSON record, written at once."""
        if self.csv_path is not None:
            with open(self.csv_path, "a", newline="", encoding="utf-8") as file:
                file.write(_csv_text([cells]))
                file.flush()
                os.fsync(file.fileno())
        if self.json_path is not None:
            self.records.append(record)
            write_json(self.json_path, self.records)


def _csv_text(rows: list[list]) -> str:
    import io

    text = io.StringIO()
    csv.writer(text, lineterminator="\n").writerows(rows)
    return text.getvalue()
