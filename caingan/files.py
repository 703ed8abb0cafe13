"""Writing files so that a reader never sees half of one, and hashing them.

`atomic_write(path, data)` is the one way this project writes a result file: the bytes go to a
hidden temp file in the same folder (``.NAME.XXXXXXXX.tmp``), are flushed and fsynced, and the
temp file is renamed over `path` (os.replace, atomic on one file system). A crash, a full disk or
an exception in the middle leaves the old file (or none) and no temp file, except after a hard
kill (SIGKILL, power loss), which no code can clean up: `is_temp_of` lets a caller that resumes
work in a folder recognise and remove those leftovers.

The temp file is created with mode 0666 minus the umask — the mode any new file gets — rather
than mkstemp's 0600, so a result is as readable as the user's other files.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path
from typing import IO, Any, Callable, Union

TEMP_SUFFIX = ".tmp"
Data = Union[bytes, bytearray, memoryview, str, Callable[[IO[bytes]], Any]]


def temp_name(path: Path) -> Path:
    """A fresh hidden name beside `path`: ``.NAME.<8 hex>.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMP_SUFFIX}")


def is_temp_of(candidate: Path, name: str) -> bool:
    """Whether `candidate` is a temp file `AtomicFile` made for a file called `name`."""
    c = candidate.name
    return c.startswith(f".{name}.") and c.endswith(TEMP_SUFFIX)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicFile:
    """A binary file that appears at `path` only on `commit()`.

    For writers that produce a file over time: open, write through `.file` (or let a library
    write to the path `.temp` — commit's fsync covers it, being the same file), then `commit()`; `abort()` (or leaving a `with` block by an exception) removes the temp
    file. `sync=False` skips the fsyncs (the rename stays atomic against crashes of this
    process, not against power loss).
    """

    def __init__(self, path, *, sync: bool = True):
        self.path = Path(path)
        self.sync = sync
        for _ in range(100):
            self.temp = temp_name(self.path)
            try:
                # O_EXCL: never reuse a name; 0o666 lets the kernel apply the umask.
                fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                             | getattr(os, "O_BINARY", 0), 0o666)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover - 100 collisions of 32 random bits
            raise FileExistsError(f"no free temp name beside {self.path}")
        self.file: IO[bytes] = os.fdopen(fd, "wb")
        self.done = False

    def commit(self) -> Path:
        if self.done:
            raise ValueError(f"{self.path}: already committed or aborted")
        try:
            self.file.flush()
            if self.sync:
                os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.temp, self.path)
        except BaseException:
            self.abort()
            raise
        self.done = True
        if self.sync:
            _fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        """Remove the temp file; never raises (it runs while another error propagates)."""
        self.done = True
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.temp)
        except OSError:
            pass

    def __enter__(self) -> "AtomicFile":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
        elif not self.done:
            self.commit()


def atomic_write(path, data: Data, *, sync: bool = True) -> Path:
    """Write `data` to `path` atomically; returns `path` as a Path.

    data: bytes, str (written as UTF-8), or a callable that writes into the binary file object
    it is given (e.g. ``lambda f: image.save(f, "PNG")``). Any exception, from the callable or
    the file system, removes the temp file and propagates unchanged.
    """
    with AtomicFile(path, sync=sync) as af:
        if isinstance(data, str):
            af.file.write(data.encode("utf-8"))
        elif isinstance(data, (bytes, bytearray, memoryview)):
            af.file.write(data)
        else:
            data(af.file)
    return af.path


def file_hash(path) -> str:
    """SHA-256 of a file's bytes, as hex (read in chunks: any size)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


__all__ = ["AtomicFile", "atomic_write", "file_hash", "is_temp_of", "temp_name"]
