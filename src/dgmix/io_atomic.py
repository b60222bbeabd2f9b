"""Every file dgmix writes is complete or absent.

Whole files are written to a temporary file in the destination folder and renamed into place with
``os.replace`` (atomic on POSIX and Windows within one file system), so a process killed mid-write
leaves either the old file, the new one, or nothing, plus at most a hidden ``.<name>.*.tmp``
that the next write of that file does not read. ``fsync=True`` (the default) also flushes the data
to disk before the rename, so a power cut cannot leave a renamed but empty file; bulk writers of
many small files that can be recomputed (feature cache entries, synthetic clips) pass ``False``.

Append-only logs (``log.jsonl``) get whole lines: :func:`append_line` writes each line with one
``os.write`` on an ``O_APPEND`` descriptor, and :func:`read_lines` ignores a trailing line without
its newline (the one a kill can cut).

Permissions: a file written here gets the mode a plain ``open(path, "w")`` of a new file would
give, ``0o666`` less the process umask (0644 under umask 022, 0664 under 002, 0600 under 077),
so results, configs and detectors can be shared as the user's umask says. ``tempfile.mkstemp``
would create them 0600 whatever the umask. The umask is never read or changed: the temporary file
is created with ``os.open(..., O_CREAT | O_EXCL, 0o666)`` and the kernel applies the umask (and
any default ACL of the folder) at that moment, exactly as for ``open``. Reading the umask would
need ``os.umask`` to set it and put it back, which briefly changes it for every thread of the
process (a file another thread creates in that window gets the wrong mode), or a value cached at
import that would miss a later ``os.umask`` call. The renamed file keeps the temporary file's
mode; like any new file, it does not take over the mode of the file it replaces.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["append_line", "atomic_path", "atomic_write_bytes", "atomic_write_text", "atomic_write_with", "read_lines"]


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it is renamed to ``path``.

    For writers that want a file name (``torch.save``, ``np.save``). On an exception the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    try:
        yield Path(tmp)
        if fsync:
            _fsync_file(tmp)
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes | bytearray | memoryview, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see module docstring); returns ``path``."""
    path = Path(path)
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """Write ``text`` atomically, with ``\\n`` line ends as given (no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding), fsync=fsync)


def atomic_write_with(path: str | Path, write: Callable[[IO[bytes]], object], fsync: bool = True) -> Path:
    """Call ``write(fh)`` on a binary file handle whose content replaces ``path`` atomically."""
    path = Path(path)
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "wb") as fh:
        write(fh)
    return path


def append_line(path: str | Path, line: str) -> None:
    """Append one line (a ``\\n`` is added) with a single ``os.write`` on an ``O_APPEND`` file.

    A reader never sees half of a line that was written whole; a kill during the write can cut
    only this last line, which :func:`read_lines` then ignores.
    """
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # less the umask, as open()
    try:
        written = os.write(fd, data)
        while written < len(data):  # a regular file takes it in one go; be safe anyway
            written += os.write(fd, data[written:])
    finally:
        os.close(fd)


def read_lines(path: str | Path) -> list[str]:
    """The complete lines of a text file (without their ``\\n``); a cut last line is dropped."""
    data = Path(path).read_bytes()
    end = data.rfind(b"\n")
    if end < 0:
        return []
    return data[: end + 1].decode("utf-8").splitlines()


#: Flags of the temporary file: created here and nowhere else, not inherited by child processes.
_TEMP_FLAGS = (os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
               | getattr(os, "O_BINARY", 0))


def _create_temp(path: Path, attempts: int = 100) -> str:
    """Create a new, empty ``.<name>.<random>.tmp`` next to ``path`` with mode 0o666 less the
    umask (applied by the kernel at creation, see the module docstring); returns its path."""
    for _ in range(attempts):
        tmp = os.path.join(path.parent, f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, _TEMP_FLAGS, 0o666)
        except FileExistsError:  # a name drawn twice (or left by a killed writer): draw again
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(f"no free temporary file name next to {path} after {attempts} attempts")


def _fsync_file(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str | Path) -> None:
    """Flush a folder's entry table (the rename); not possible on every platform."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
