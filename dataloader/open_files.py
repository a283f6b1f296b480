"""Files a process keeps open between reads (packs, video decoders): the last few it used."""

import os
from collections import OrderedDict


class OpenFiles:
    """The last ``size`` files this process opened, by path, most recently used last; each is
    an object with ``close()``.

    Kept per process id: a forked DataLoader worker opens its own, as a file offset or a decoder
    shared across fork is not safe. ``close_inherited`` closes the copies a child inherited
    (plain descriptors); otherwise they are dropped (an FFmpeg decoder with threads cannot be
    closed where its threads did not survive the fork). A pickled copy carries none.
    """

    def __init__(self, size: int, close_inherited: bool = False):
        self.size, self.close_inherited = size, close_inherited
        self.pid = os.getpid()
        self.files: OrderedDict = OrderedDict()

    def get(self, path: str, open_file, current=None):
        """The open file ``path``: ``open_file(path)`` where none is open or ``current(file)``
        says the one open is stale."""
        if self.pid != os.getpid():
            if self.close_inherited:
                for file in self.files.values():
                    file.close()
            self.pid, self.files = os.getpid(), OrderedDict()
        file = self.files.pop(path, None)
        if file is not None and current is not None and not current(file):
            file.close()
            file = None
        if file is None:
            file = open_file(path)
        self.files[path] = file
        while len(self.files) > self.size:
            self.files.popitem(last=False)[1].close()
        return file

    def __getstate__(self) -> dict:
        return {**self.__dict__, "pid": None, "files": OrderedDict()}
