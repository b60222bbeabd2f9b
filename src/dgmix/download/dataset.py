"""``dgmix download``: fetch the chosen parts of a DCASE Task 2 data set and unpack them into the
layout ``dgmix data`` / ``dgmix run --data`` read (``DIR/dev_data/<machine>/{train,test}``,
``DIR/eval_data/<machine>/{train,test}``, data/discover.py).

The zips are downloaded to ``DIR/zips/<record>/`` with the record's JSON; an unpacked zip leaves a
``<zip>.unpacked`` marker, so a second run lists nothing, downloads nothing and unpacks nothing.

The evaluation sets' ground truth (``ground_truth_data/``, ``ground_truth_domain/``) is not part of
the Zenodo records; it is published with each year's evaluator on GitHub, without checksums, and
is not downloaded here: copy it into ``DIR/eval_data/`` and ``dgmix data`` reads it there.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dgmix.download.fetch import DownloadError, download
from dgmix.download.records import PART_DIRS, RECORDS, ZENODO, fetch_record
from dgmix.errors import InputError
from dgmix.io_atomic import atomic_path

#: Leading folders stripped from zip members (some releases wrap the machine folders in them).
_WRAPPERS = {"dev_data", "eval_data"}


@dataclass
class DownloadSummary:
    downloaded: list[str] = field(default_factory=list)
    unpacked: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    bytes: int = 0


def unpack(zip_path: Path, dest: Path) -> int:
    """Extract ``zip_path`` under ``dest`` (wrapper folders stripped; each file through a temporary file and a
    rename); returns the file count. A member with an absolute or ``..`` path is refused before anything is written."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = []
            for info in zf.infolist():
                p = PurePosixPath(info.filename.replace("\\", "/"))  # PurePosixPath drops empty and "." parts
                if p.is_absolute() or ".." in p.parts:
                    raise InputError(zip_path, f"zip member {info.filename!r} would be written outside the folder")
                parts = p.parts[1:] if p.parts and p.parts[0] in _WRAPPERS else p.parts
                if parts and parts[0] != "__MACOSX" and not info.is_dir():
                    members.append((info, dest.joinpath(*parts)))
            for info, target in members:
                with atomic_path(target, fsync=False) as tmp, zf.open(info) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except zipfile.BadZipFile as e:
        raise InputError(zip_path, f"not a valid zip file ({e})") from None
    return len(members)


def select_parts(dev: bool, additional: bool, eval_: bool) -> list[str]:
    parts = [p for p, on in (("dev", dev), ("additional", additional), ("eval", eval_)) if on]
    return parts or ["dev"]


def download_dataset(
    dataset: str, parts: Sequence[str], to: Path, base_url: str = ZENODO,
    machines: Sequence[str] | None = None, echo: Callable[[str], None] = print, timeout: float = 60.0,
    keep_zips: bool = False,
) -> DownloadSummary:
    """Download, verify and unpack ``parts`` of ``dataset`` into ``to``.

    ``machines`` keeps only the zips whose name contains one of them (case-insensitive). A verified
    zip is deleted once unpacked unless ``keep_zips`` (its marker stays).
    Raises:
        InputError: unknown data set or part; a record that cannot be listed; a download that is cut
            or fails its checksum (the other files are still fetched first; then one error names them all).
    """
    if dataset not in RECORDS:
        raise InputError("dataset", f"unknown data set {dataset!r}; choose one of {', '.join(RECORDS)}")
    to = Path(to)
    summary = DownloadSummary()
    errors: list[DownloadError] = []
    for part in parts:
        if part not in PART_DIRS:
            raise InputError("part", f"unknown part {part!r}; choose dev, additional or eval")
        rid = RECORDS[dataset][part]
        zdir = to / "zips" / str(rid)
        for f in fetch_record(rid, base_url, zdir / "record.json", timeout):
            key = f.key.lower()
            if not key.endswith(".zip") or (machines and not any(m.lower() in key for m in machines)):
                continue
            zpath = zdir / f.key
            marker = zdir / (f.key + ".unpacked")
            if marker.is_file():
                summary.already.append(f.key)
                continue
            try:
                echo(f"{dataset} {part}: {f.key} ({f.size / 1e6:.1f} MB) ...")
                if download(f.url, zpath, f.size, f.md5, timeout):
                    summary.downloaded.append(f.key)
                    summary.bytes += f.size
            except DownloadError as e:
                errors.append(e)
                continue
            n = unpack(zpath, to / PART_DIRS[part])
            marker.write_text(f"{n} files, md5 {f.md5}\n")
            if not keep_zips:
                zpath.unlink()
            summary.unpacked.append(f.key)
            echo(f"{dataset} {part}: {f.key} verified (md5) and unpacked: {n} files in {to / PART_DIRS[part]}")
    if errors:
        raise errors[0] if len(errors) == 1 else DownloadError(
            to, f"{len(errors)} zips failed: " + "; ".join(str(e) for e in errors))
    return summary
