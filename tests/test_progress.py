"""Progress bars draw on a terminal only; a log file gets none of tqdm's carriage returns."""

import io
import sys

from utils.progress import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _drive(stream, monkeypatch, **options) -> tuple[list[int], str]:
    monkeypatch.setattr(sys, "stderr", stream)
    bar = progress(range(40), desc="epoch 1 train", **options)
    seen = []
    for i in bar:
        seen.append(i)
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}")
    bar.close()
    return seen, stream.getvalue()


def test_a_log_file_gets_no_bar_and_every_item(monkeypatch):
    seen, written = _drive(io.StringIO(), monkeypatch)
    assert seen == list(range(40)) and written == ""


def test_a_terminal_gets_the_bar_unless_this_process_is_not_the_main_one(monkeypatch):
    seen, written = _drive(Terminal(), monkeypatch)
    assert seen == list(range(40)) and "epoch 1 train" in written and "\r" in written
    seen, written = _drive(Terminal(), monkeypatch, show=False)  # rank > 0 under torchrun
    assert seen == list(range(40)) and written == ""
