"""Every file dgmix writes is complete or absent.

Whole files are written to a temporary file in the destination folder and renamed into place with
``os.replace`` (atomic on POSIX and Windows within one file system), so a process killed mid-write
leaves either the old file, the new one, or nothing, plus at most a hidden ``.<name>.*.tmp``
that the next write of that file does not read. ``fsync=True`` (the default) also flushes the data
to disk before the rename, so a power cut cannot leave a renamed but empty file; bulk writers of
many small files that can be recomputed (feature cache entries, synthetic clips) pass ``False``.

Append-only logs (``log.jsonl``) get whole lines: :func:`append_line` writes each line with one
write on an ``O_APPEND`` file, and :func:`read_lines` ignores a trailing line without
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


@contextlib.contextmanager
def atomic_path(path: str | Path, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it is renamed to ``path``.

    For writers that want a file name (``torch.save``, ``np.save``). On an exception the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A new, empty file of this writer's own (O_EXCL: never an existing file or a symlink; 48 random bits make a
    # clash with another writer's name negligible), mode 0o666 less the umask (applied by the kernel, see above).
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        if fsync:
            _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_with(path: str | Path, write: Callable[[IO[bytes]], object], fsync: bool = True) -> Path:
    """Call ``write(fh)`` on a binary file handle whose content replaces ``path`` atomically."""
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "wb") as fh:
        write(fh)
    return Path(path)


def atomic_write_bytes(path: str | Path, data: bytes | bytearray | memoryview, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see module docstring); returns ``path``."""
    return atomic_write_with(path, lambda fh: fh.write(data), fsync=fsync)


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """Write ``text`` atomically, with ``\\n`` line ends as given (no newline translation)."""
    return atomic_write_bytes(path, text.encode(encoding), fsync=fsync)


def append_line(path: str | Path, line: str) -> None:
    """Append one line (a ``\\n`` is added) with a single write on an ``O_APPEND`` file (``open(path, "ab")``,
    created like any ``open``: 0o666 less the umask; the buffered file hands the whole line to one ``write``).

    A reader never sees half of a line that was written whole; a kill during the write can cut
    only this last line, which :func:`read_lines` then ignores.
    """
    with open(path, "ab") as fh:
        fh.write((line.rstrip("\n") + "\n").encode("utf-8"))


def read_lines(path: str | Path) -> list[str]:
    """The complete lines of a text file (without their ``\\n``); a cut last line is dropped."""
    data = Path(path).read_bytes()
    return data[: data.rfind(b"\n") + 1].decode("utf-8").splitlines()  # no newline at all: rfind is -1, nothing


def _fsync_dir(path: str | Path) -> None:
    """Flush a folder's entry table (the rename); not possible on every platform."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
