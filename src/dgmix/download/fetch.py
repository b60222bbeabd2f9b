"""One file over HTTP(S), resumable with ``Range`` and verified against its published md5.

The bytes go to ``<name>.part``; a run that is cut off leaves it there and the next run asks for
``Range: bytes=<have>-`` (a server that answers 200 instead of 206 sends the whole file again).
Only a complete file whose size and md5 match is renamed to ``<name>``; a mismatch moves it to
``<name>.bad`` (kept for inspection, never unpacked) and is an error.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from dgmix.errors import InputError

CHUNK = 1 << 20


class DownloadError(InputError):
    """A download that did not finish or did not verify (one line, names the file)."""


def download(url: str, dest: Path, size: int, md5: str, timeout: float = 60.0) -> bool:
    """Make ``dest`` the verified file at ``url``. Returns False when it was already there.

    Raises:
        DownloadError: the connection failed or was cut (``dest.part`` is kept: run again to resume),
            or the finished file's size or md5 differs from the record's (moved to ``dest.bad``).
    """
    if dest.is_file() and dest.stat().st_size == size:
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.is_file() else 0
    if have > size:
        part.unlink()
        have = 0
    if have < size:
        req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            # a server that answers 200 to the Range request sends the whole file: start the part afresh
            with urllib.request.urlopen(req, timeout=timeout) as r, open(part, "ab" if r.status == 206 else "wb") as fh:
                shutil.copyfileobj(r, fh, CHUNK)
        except urllib.error.HTTPError as e:
            raise DownloadError(url, f"HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            reason = getattr(e, "reason", None) or e.__class__.__name__
            got = part.stat().st_size if part.is_file() else 0
            raise DownloadError(dest, f"download cut after {got} of {size} bytes ({reason}); "
                                      "run the command again to resume") from None
    got = part.stat().st_size
    if got != size:
        raise DownloadError(dest, f"download cut after {got} of {size} bytes; run the command again to resume")
    h = hashlib.md5()
    with open(part, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    digest = h.hexdigest()
    if digest != md5:
        bad = dest.with_name(dest.name + ".bad")
        os.replace(part, bad)
        raise DownloadError(dest, f"md5 {digest} does not match the record's {md5}; the file is kept as "
                                  f"{bad.name} and not unpacked (run again to download it afresh)")
    os.replace(part, dest)
    return True
