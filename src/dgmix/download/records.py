"""The DCASE Task 2 Zenodo records and their file lists (Zenodo records API).

``GET {base}/api/records/<id>`` returns JSON whose ``files`` list holds, per file, ``key`` (the
file name), ``size`` (bytes), ``checksum`` (``"md5:<hex>"``) and ``links.self`` (the download URL).

Record ids (checked against the task pages' download links as quoted by the official baselines'
READMEs and download scripts; no network was available to query Zenodo itself):

* DCASE 2022 Task 2: development 6355122, additional training 6462969, evaluation 6586456;
* DCASE 2023 Task 2: development 7882613 (the fixed-attributes release of 2023-05-01, which replaced
  7690148 and 7690157), additional training 7830345, evaluation 7860847;
* DCASE 2024 Task 2: development 10902294, additional training 11259435 (which replaced 11183284),
  evaluation 11363076.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from dgmix.errors import InputError

ZENODO = "https://zenodo.org"

#: dataset -> part -> Zenodo record id. Parts: ``dev`` (development set), ``additional``
#: (additional training data of the evaluation machine types), ``eval`` (evaluation test clips).
RECORDS: dict[str, dict[str, int]] = {
    "dcase2022": {"dev": 6355122, "additional": 6462969, "eval": 6586456},
    "dcase2023": {"dev": 7882613, "additional": 7830345, "eval": 7860847},
    "dcase2024": {"dev": 10902294, "additional": 11259435, "eval": 11363076},
}

#: Where each part is unpacked under ``--to`` (the layout ``dgmix data`` reads, data/discover.py).
PART_DIRS = {"dev": "dev_data", "additional": "eval_data", "eval": "eval_data"}


@dataclass(frozen=True)
class RemoteFile:
    key: str
    size: int
    md5: str
    url: str


def parse_record(data: dict, record_id: int, base: str = ZENODO, source: str = "record") -> list[RemoteFile]:
    """The files of a record's JSON; download links are moved onto ``base`` when it is a mirror.

    Raises:
        InputError: the JSON lacks ``files`` or a file lacks its key, size, md5 checksum or link.
    """
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not files:
        raise InputError(source, f"record {record_id} lists no files")
    out = []
    for f in files:
        try:
            algo, _, digest = str(f["checksum"]).partition(":")
            if algo != "md5" or len(digest) != 32:
                raise ValueError(f"checksum {f['checksum']!r} is not md5:<32 hex digits>")
            key = str(f["key"])
            if "/" in key or "\\" in key or key in ("", ".", ".."):
                raise ValueError(f"unsafe file name {key!r}")
            url = str(f["links"]["self"])
            if base.rstrip("/") != ZENODO:  # a mirror: its scheme and host (and path prefix) replace Zenodo's
                u, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
                url = urllib.parse.urlunsplit((b.scheme, b.netloc, b.path.rstrip("/") + u.path, u.query, ""))
            out.append(RemoteFile(key, int(f["size"]), digest.lower(), url))
        except (KeyError, TypeError, ValueError) as e:
            raise InputError(source, f"record {record_id}: bad file entry ({e})") from None
    return out


def fetch_record(record_id: int, base: str, cache: Path, timeout: float = 60.0) -> list[RemoteFile]:
    """The record's files from ``{base}/api/records/<id>``; the JSON is kept in ``cache`` (a file),
    and a cached copy is used without asking the server again."""
    if cache.is_file():
        try:
            return parse_record(json.loads(cache.read_text()), record_id, base, str(cache))
        except (ValueError, InputError):
            cache.unlink()
    url = f"{base.rstrip('/')}/api/records/{record_id}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": "application/json"}),
                                    timeout=timeout) as r:
            data = json.loads(r.read())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InputError(url, "the records API did not return JSON") from None
    except (urllib.error.URLError, OSError) as e:
        raise InputError(url, f"cannot list the record ({getattr(e, 'reason', e)})") from None
    files = parse_record(data, record_id, base, url)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(data))
    return files
