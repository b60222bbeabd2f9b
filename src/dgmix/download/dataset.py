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
from dgmix.download.records import PART_DIRS, RECORDS, ZENODO, RemoteFile, fetch_record
from dgmix.errors import InputError

#: Leading folders stripped from zip members (some releases wrap the machine folders in them).
_WRAPPERS = {"dev_data", "eval_data"}


@dataclass
class DownloadSummary:
    downloaded: list[str] = field(default_factory=list)
    unpacked: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    bytes: int = 0


def safe_members(zf: zipfile.ZipFile, source: Path) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    """Members with their target path (wrapper folders stripped); absolute or ``..`` paths are refused."""
    out = []
    for info in zf.infolist():
        p = PurePosixPath(info.filename.replace("\\", "/"))
        if p.is_absolute() or ".." in p.parts:
            raise InputError(source, f"zip member {info.filename!r} would be written outside the folder")
        parts = [x for x in p.parts if x not in ("", ".")]
        if parts and parts[0] in _WRAPPERS:
            parts = parts[1:]
        if not parts or parts[0] == "__MACOSX" or info.is_dir():
            continue
        out.append((info, PurePosixPath(*parts)))
    return out


def unpack(zip_path: Path, dest: Path) -> int:
    """Extract ``zip_path`` under ``dest`` (through ``<file>.tmp`` renames); returns the file count."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            members = safe_members(zf, zip_path)
            for info, rel in members:
                target = dest.joinpath(*rel.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".tmp")
                with zf.open(info) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                tmp.replace(target)
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
        files: list[RemoteFile] = fetch_record(rid, base_url, zdir / "record.json", timeout)
        files = [f for f in files if f.key.lower().endswith(".zip")]
        if machines:
            files = [f for f in files if any(m.lower() in f.key.lower() for m in machines)]
        for f in files:
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
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise DownloadError(to, f"{len(errors)} zips failed: " + "; ".join(str(e) for e in errors))
    return summary
