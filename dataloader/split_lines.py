"""Split files read line by line, and the checks every split format shares.

A bad split must stop a run before anything trains, with one line naming the file and the line
to fix: a video listed twice once trained on 22 "training" videos of 19 and was caught only by
the score file's writer. Shared here: reading (a UTF-8 byte-order mark is dropped, as files saved
on Windows have one) and a video listed twice.
"""

import re
from pathlib import Path
from typing import NamedTuple

from utils.errors import UserError
from utils.video_names import video_key

_NEWLINE = re.compile(r"\r\n|\r|\n")  # numbered as an editor numbers them


class Line(NamedTuple):
    """One non-empty line of a split file, stripped, with its 1-based number."""

    path: Path
    number: int
    text: str

    @property
    def where(self) -> str:
        return f"{self.path}, line {self.number}"


def read_lines(path: Path, what: str) -> list[Line]:
    """The non-empty lines of ``path`` (``what`` says which file it is, for the error)."""
    if not path.is_file():
        raise UserError(
            f"split file not found: {path} ({what}); point --splits-dir at the folder that holds it"
        )
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UserError(f"{path} is UTF-16 text; save it as UTF-8 (plain text) and run again")
    text = raw.decode("utf-8-sig", errors="replace")  # utf-8-sig: without a leading BOM
    lines = (line.strip() for line in _NEWLINE.split(text))
    return [Line(path, number, text) for number, text in enumerate(lines, 1) if text]


def check_unique(listed) -> None:
    """Refuse a video listed twice: in one list, or in two (train and test, two classes).

    ``listed``: (Line, video name) pairs of every list of the split. Names compare as the frame
    folders are found (``utils.video_names.video_key``), so two spellings of one folder clash.
    """
    first: dict[str, Line] = {}
    for line, name in listed:
        seen = first.setdefault(video_key(name), line)
        if seen is not line:
            raise UserError(
                f"{line.where}: video {name} is listed again, first at {seen.where}; "
                "list each video once, in one list"
            )
