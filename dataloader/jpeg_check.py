"""Corrupt JPEG data that decodes without an error: found for the data scan (dataloader.checks).

Bytes overwritten in the middle of a frame (past its headers) leave a file that OpenCV decodes:
libjpeg warns on stderr ("Corrupt JPEG data: premature end of data segment"), fills the rest of
the frame with grey and ``cv2.imdecode`` returns the image; an error met after the last row
(a stray marker) is not even printed. PIL's and torchvision's decoders raise on most such files
but not all. So the scan, which decodes every frame with OpenCV as training does, also

- holds back what native code writes to stderr while it decodes (``DecoderWarnings``): a
  libjpeg warning of corrupt data marks the frame it was written for;
- checks the markers of a one-scan (baseline) JPEG (``marker_problem``): inside the image data
  every 0xFF byte must be followed by 0x00 (or a restart marker where the file declares them),
  up to the end-of-image marker at the end of the file.

Together they found every one of 1,800 frames tried (video frames, noise, flat images, with up
to 3 KB or a third of their image data overwritten at random places; tests/test_checks.py tries
12); a few flipped bits that still decode as valid data cannot be told from real content by any
decoder. Training reads do neither check.
"""

import os
import re
import sys
import tempfile

# libjpeg's warnings (JWRN_*) that mean damaged data; others, such as an unknown JFIF
# revision, are harmless and go on to stderr like any other text.
_CORRUPT = ("Corrupt JPEG data", "Premature end of JPEG file", "Inconsistent progression")
_SEQUENTIAL = (0xC0, 0xC1)  # the frame markers of baseline and extended sequential JPEG
_SOS, _DRI, _EOI = 0xDA, 0xDD, 0xD9
# In image data 0xFF is followed by 0x00 (a stuffed 0xFF byte) or by more 0xFF (fill), and by a
# restart marker where the file declares them; anything else is a marker, which ends the data.
_MARKER = re.compile(rb"\xff[^\x00\xff]")
_MARKER_OR_RESTART = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
_TAIL = 64  # bytes after the end-of-image marker that are tolerated, as datasets.read_jpeg does


class DecoderWarnings:
    """While open, what native code writes to stderr (fd 2) goes to a temporary file;
    ``corrupt()`` returns the first libjpeg corruption warning written since its last call
    ("" when none) and passes any other text on to the real stderr."""

    def __enter__(self):
        sys.stderr.flush()
        self._file = tempfile.TemporaryFile()
        self._read = 0
        try:
            self._stderr = os.dup(2)
        except OSError:  # no stderr to take over: nothing to catch
            self._stderr = None
        else:
            os.dup2(self._file.fileno(), 2)
        return self

    def corrupt(self) -> str:
        fd = self._file.fileno()
        size = os.fstat(fd).st_size
        if size == self._read:
            return ""
        os.lseek(fd, self._read, os.SEEK_SET)  # shared with fd 2: left at the end, as it was
        text = os.read(fd, size - self._read).decode(errors="replace")
        self._read = size
        lines = text.splitlines(keepends=True)
        others = "".join(line for line in lines if not line.startswith(_CORRUPT))
        if others and self._stderr is not None:
            os.write(self._stderr, others.encode())
        return next((line.strip() for line in lines if line.startswith(_CORRUPT)), "")

    def __exit__(self, *exc):
        if self._stderr is not None:
            os.dup2(self._stderr, 2)
            os.close(self._stderr)
        self._file.close()


def _one_scan_start(data: bytes) -> tuple[int, bool] | None:
    """(where the image data begins, whether restart markers are declared) of a JPEG whose
    first scan holds every component of a sequential frame; None for any other file (a
    progressive one, a scan per component, unreadable headers): the decoder judges those."""
    components, restart, i = None, False, 2
    while i + 4 < len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        end = i + 2 + (data[i + 2] << 8 | data[i + 3])  # the segment's length counts itself
        if marker in _SEQUENTIAL and i + 9 < len(data):
            components = data[i + 9]
        restart |= marker == _DRI
        if marker == _SOS:
            whole = components is not None and data[i + 4] == components
            return (end, restart) if whole else None
        i = end
    return None


def marker_problem(data: bytes) -> str:
    """What is wrong with the markers of a one-scan JPEG's image data ("" when nothing is)."""
    found = _one_scan_start(data)
    if found is None:
        return ""
    start, restart = found
    marker = (_MARKER_OR_RESTART if restart else _MARKER).search(data, start)
    if marker is None:
        return "no end-of-image marker"
    at = marker.start()
    if data[at + 1] == _EOI and at + 2 >= len(data) - _TAIL:
        return ""
    return f"marker 0x{data[at + 1]:02X} inside the image data at byte {at}"
