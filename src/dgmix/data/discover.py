"""Find the clips under a dataset root and describe each one.

A root may be a DCASE download (``ROOT/dev_data/<machine>/{train,test}/``,
``ROOT/eval_data/<machine>/{train,test}/``), the machine folders directly
(``ROOT/valve/train/...``), a single machine or split folder, a MIMII 2019 tree
(``ROOT/<machine>/id_XX/{normal,abnormal}/``) or a plain layout; file names and folders are
interpreted by :func:`dgmix.data.records.parse_filename`.

Layouts without a train/test split (MIMII 2019, plain ``<machine>/{normal,anomaly}``) get the
seeded split of :mod:`dgmix.data.split`; ``Dataset.splits`` describes it per machine type and ID.

``scan`` also reads every ``attributes_XX.csv`` it meets (merged into the records of the clips
they name, for the clips below the CSV's folder) and every evaluator-format ground truth folder
(``ground_truth_data/`` + ``ground_truth_domain/``) inside the root or given as ``ground_truth``;
these fill in the label/domain of evaluation clips whose names do not carry them.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dgmix.errors import InputError, undecodable_name

from .audio import audio_problem
from .ground_truth import DATA_DIR, DOMAIN_DIR, GroundTruth, attribute_files, read_attributes_csv, read_ground_truth
from .records import ClipRecord, canonical_machine, machine_from_folders, parse_filename, strip_machine_prefix
from .split import GroupSplit, SplitConfig, assign_split

#: Extensions of audio files that are reported (not silently skipped) because dgmix does not read them.
AUDIO_LIKE_EXTENSIONS = frozenset({".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".aif", ".aiff", ".aifc",
                                   ".wma", ".au", ".snd", ".caf", ".w64", ".rf64", ".wv", ".ape", ".mp4", ".webm"})
#: Clip files every verb reads (data, features, run, score, serve, training): WAV and FLAC, the
#: lossless formats that soundfile reads everywhere (users keep FLAC archives).
CLIP_EXTENSIONS = frozenset({".wav", ".wave", ".flac"})


@dataclass
class Dataset:
    """The clips found under a root (docs/architecture.md, ``dgmix.data``).

    Attributes:
        root: The scanned folder.
        records: One :class:`ClipRecord` per usable clip, sorted by (machine, section, split, path).
        errors: ``(path, problem)`` for every file that could not be used, sorted by path.
        splits: One :class:`GroupSplit` per machine type and section whose layout had no split
            and got the seeded one of ``split_config``.
        split_config: The :class:`SplitConfig` used.
    """

    root: Path
    records: list[ClipRecord] = field(default_factory=list)
    errors: list[tuple[Path, str]] = field(default_factory=list)
    splits: list[GroupSplit] = field(default_factory=list)
    split_config: SplitConfig = field(default_factory=SplitConfig)

    def __len__(self) -> int:
        return len(self.records)

    def machines(self) -> list[str]:
        """The machine types present, sorted."""
        return sorted({r.machine for r in self.records})

    def select(self, machine: str | None = None, split: str | None = None, section: str | None = None,
               domain: str | None = None, label: str | None = None) -> list[ClipRecord]:
        """The records matching every criterion given (``None`` = any), in dataset order."""
        machine = canonical_machine(machine) if machine is not None else None
        section = f"{int(section):02d}" if section is not None and section.isdigit() else section
        want = {"machine": machine, "split": split, "section": section, "domain": domain, "label": label}
        want = {k: v for k, v in want.items() if v is not None}
        return [r for r in self.records if all(getattr(r, k) == v for k, v in want.items())]

    def counts(self) -> list[dict]:
        """Clip counts: ``{"machine", "section", "domain", "split", "label", "n"}`` per group."""
        c = Counter((r.machine, r.section, r.domain, r.split, r.label) for r in self.records)
        keys = ("machine", "section", "domain", "split", "label")
        return [dict(zip(keys, k), n=n) for k, n in sorted(c.items())]


def _walk(root: Path) -> Iterator[tuple[Path, list[str]]]:
    """Yield ``(folder, file names)`` in sorted order; hidden entries skipped; symlink loops cut."""
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield Path(dirpath), sorted(f for f in filenames if not f.startswith("."))


def scan(root: str | Path, ground_truth: str | Path | None = None, *, check_audio: bool = False, on_error: str = "skip",
         split: SplitConfig | None = None) -> Dataset:
    """Find every clip under ``root`` and build its :class:`ClipRecord`.

    Args:
        root: Dataset folder (see module docstring for the layouts).
        ground_truth: Folder with evaluator-format ground truth (``ground_truth_data/`` and
            ``ground_truth_domain/``), in addition to any found inside ``root``.
        check_audio: Also open each clip's header with ``soundfile.info``; unreadable or empty
            files become errors, not records.
        on_error: ``"skip"`` collects problems in ``Dataset.errors``; ``"fail"`` raises the
            first one as :class:`InputError`.
        split: How clips whose layout has no train/test split are divided (MIMII 2019, plain
            ``<machine>/{normal,anomaly}``); default ``SplitConfig()``, the MIMII protocol.

    A ``.wav`` or ``.flac`` that cannot be interpreted, another audio file (``.mp3``, ...) and a
    clip whose label in the name contradicts the ground truth are errors; other files are ignored.

    Raises:
        InputError: ``root`` (or ``ground_truth``) missing or not a folder; with
            ``on_error="fail"``, the first bad file; a ``split.test_normals`` count that leaves a
            group no normal clip to train on.
    """
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    root = Path(root)
    if not root.exists():
        raise InputError(root, "dataset folder not found")
    if not root.is_dir():
        raise InputError(root, "not a folder")

    ds = Dataset(root=root, split_config=split if split is not None else SplitConfig())

    def problem(path: Path, text: str) -> None:
        if on_error == "fail":
            raise InputError(path, text)
        ds.errors.append((path, text))

    root_chain = [p.name for p in [root.absolute(), *root.absolute().parents] if p.name]
    attribute_tables: dict[Path, dict[str, dict[str, str]]] = {}
    records: list[ClipRecord] = []
    gt_dirs: set[Path] = set()
    for folder, names in _walk(root):
        rel = list(reversed(folder.relative_to(root).parts))
        if folder.name.lower() in (DATA_DIR, DOMAIN_DIR):
            gt_dirs.add(folder.parent)
        for csv_path in attribute_files(folder / n for n in names):
            try:
                attribute_tables.setdefault(folder, {}).update(read_attributes_csv(csv_path))
            except InputError as e:
                problem(csv_path, e.problem)
        for n in names:
            if isinstance(rec := _read_clip(folder / n, rel, root_chain, check_audio), str):
                problem(folder / n, rec)
            elif rec is not None:
                records.append(rec)

    gt = read_ground_truth(ground_truth) if ground_truth is not None else GroundTruth()
    for gt_dir in sorted(gt_dirs):
        try:
            gt.update(read_ground_truth(gt_dir))
        except InputError as e:
            problem(Path(e.path), e.problem)

    final: list[ClipRecord] = []
    for rec in records:
        rec = _merge_attributes(rec, root, attribute_tables) if attribute_tables else rec
        if len(gt):
            rec, conflict = _apply_ground_truth(rec, gt)
            if conflict is not None:
                problem(rec.path, conflict)
                continue
        final.append(rec)
    final, ds.splits = assign_split(final, ds.split_config, root)
    ds.records = sorted(final, key=lambda r: (r.machine, r.section, r.split, str(r.path)))
    ds.errors.sort(key=lambda e: str(e[0]))
    return ds


def _read_clip(path: Path, rel: list[str], root_chain: list[str], check_audio: bool) -> ClipRecord | str | None:
    """The record of the clip at ``path``, the problem that makes it unusable, or ``None`` (not a clip)."""
    ext = path.suffix.lower()
    if ext in AUDIO_LIKE_EXTENSIONS:
        return f"not a WAV or FLAC file ({ext}); convert it to .wav or .flac to use it"
    if ext not in CLIP_EXTENSIONS:
        return None
    if (bad_name := undecodable_name(path)) is not None:
        return bad_name
    prefixed = strip_machine_prefix(path.name) != path.name  # the machine type is in the name
    machine = None if prefixed else machine_from_folders(rel) or machine_from_folders(root_chain)
    try:
        rec = parse_filename(path, machine=machine, folders=rel + root_chain)
    except InputError as e:
        return e.problem
    return (audio_problem(path) if check_audio else None) or rec


def _merge_attributes(rec: ClipRecord, root: Path, tables: dict[Path, dict[str, dict[str, str]]]) -> ClipRecord:
    """Merge the attributes from the nearest ``attributes_XX.csv`` that names this clip."""
    for folder in (rec.path.parent, *rec.path.parent.parents):
        table = tables.get(folder, {})
        attrs = table.get(rec.name) or table.get(rec.dcase_name)
        if attrs is not None:
            return dataclasses.replace(rec, attributes={**rec.attributes, **attrs})
        if folder == root:
            break
    return rec


def _apply_ground_truth(rec: ClipRecord, gt: GroundTruth) -> tuple[ClipRecord, str | None]:
    """Fill an unknown label/domain from the ground truth; report a contradiction."""
    changes: dict[str, str] = {}
    for attr, table in (("label", gt.labels), ("domain", gt.domains)):
        value = table.get((rec.machine, rec.section, rec.dcase_name)) or table.get((rec.machine, rec.section, rec.name))
        current = getattr(rec, attr)
        if value is not None and current == "unknown":
            changes[attr] = value
        elif value is not None and current != value:
            return rec, f"the file name says {attr} {current!r} but the ground truth says {value!r}"
    return dataclasses.replace(rec, **changes), None
