"""Files that other processes read: atomic replacement with explicit modes, content digests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

CERT_MODE = 0o644
KEY_MODE = 0o600


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` so that a reader sees the old or the new content, never a mix.

    The temp file lives in the same directory (``os.replace`` is only atomic within one
    filesystem) and is removed again if anything fails.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def digest(chunks: Iterable[bytes]) -> str:
    """SHA-256 over length-prefixed chunks, so (a, bc) and (ab, c) differ."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(len(chunk).to_bytes(8, "big"))
        h.update(chunk)
    return h.hexdigest()


def read_digest(paths: Iterable[Path]) -> str | None:
    """Digest of the files' contents, or None while any of them is missing or unreadable."""
    try:
        return digest(p.read_bytes() for p in paths)
    except OSError:
        return None


def atomic_write_all(items: Iterable[tuple[Path, bytes, int]]) -> None:
    """Replace several files in order, each atomically, after all of them are safely on disk.

    Every temp file is written and fsynced first, so a full disk or a missing directory fails
    before anything is replaced. Should a later replace fail, the files already replaced get
    their old content, mode and mtime back. No temp file is left behind.
    """
    staged: list[tuple[Path, Path]] = []
    replaced: list[tuple[Path, _Previous | None]] = []
    try:
        for path, data, mode in items:
            fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((Path(tmp_name), path))
            with os.fdopen(fd, "wb") as handle:
                os.fchmod(handle.fileno(), mode)
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        for tmp, path in staged:
            previous = _Previous.of(path)
            os.replace(tmp, path)
            replaced.append((path, previous))
    except BaseException:
        for tmp, _ in staged:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        for path, previous in reversed(replaced):
            with contextlib.suppress(OSError):
                if previous is None:
                    path.unlink()
                else:
                    previous.restore(path)
        raise
    for directory in {path.parent for _, path in staged}:
        fsync_dir(directory)


class _Previous:
    """A small file's content, mode and times, to put back when a group replace fails."""

    def __init__(self, data: bytes, mode: int, times: tuple[int, int]) -> None:
        self.data = data
        self.mode = mode
        self.times = times

    @classmethod
    def of(cls, path: Path) -> _Previous | None:
        try:
            st = path.stat()
            return cls(path.read_bytes(), st.st_mode & 0o7777, (st.st_atime_ns, st.st_mtime_ns))
        except OSError:
            return None

    def restore(self, path: Path) -> None:
        atomic_write(path, self.data, self.mode)
        os.utime(path, ns=self.times)
