"""One record per clip, and the parser that turns a clip's path into one.

Recognised file names (the first that matches wins):

* DCASE 2021-2024 development / additional-training names
  ``section_XX_{source|target}_{train|test}_{normal|anomaly}_NNNN[_<attrs>].wav``;
  the same with the machine type and split put in front, ``<Machine>_{train|test}_section_...``
  (as some copies of the DCASE 2023 data have them; the machine type then comes from the prefix).
* DCASE evaluation test names ``section_XX_NNNN.wav`` (label and domain ``"unknown"``; the
  ground-truth CSVs, see :mod:`dgmix.data.ground_truth`, can fill them in).
* DCASE 2020 names ``{normal|anomaly}_id_XX_NNNNNNNN.wav`` (the machine ID becomes the section;
  DCASE 2020 had no domain shift, so the domain is ``"source"``) and its evaluation test names
  ``id_XX_NNNNNNNN.wav`` (label unknown).
* MIMII 2019 folders ``<machine>/id_XX/{normal,abnormal}/<name>.wav``: section = ``XX`` (the
  machine ID, as DCASE 2020 mapped it), domain ``"unknown"``.
* A plain layout ``<machine>/train/<name>.wav`` (normal training clips, section ``"00"``) and
  ``<machine>/test/{normal,anomaly,abnormal}/<name>.wav``; domain ``"unknown"``.
* A plain layout without a split, ``<machine>/{normal,anomaly,abnormal}/<name>.wav``: section
  ``"00"``, domain ``"unknown"``.

MIMII 2019 and the plain layout without a split carry no train/test split: their records have
``split_given=False`` and a provisional split (``"test"``) until
:func:`dgmix.data.split.assign_split` (called by :func:`dgmix.data.scan`) draws the real one.

The machine type is the file-name prefix when there is one, otherwise the nearest folder above
the file that is not a layout folder (``train``, ``test``, ``normal``, ``id_00``, ``dev_data``,
...); a folder named like one of the known machine types (case-insensitive) is preferred. Known
machine types are written in their canonical spelling (:data:`MACHINE_TYPES`); others are kept as
given.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dgmix.errors import InputError

#: Canonical spellings of the DCASE 2022 machine types (case-insensitive match).
MACHINE_TYPES: tuple[str, ...] = ("ToyCar", "ToyTrain", "bearing", "fan", "gearbox", "slider", "valve")
_CANONICAL = {m.lower(): m for m in MACHINE_TYPES}

DOMAINS = ("source", "target", "unknown")
SPLITS = ("train", "test")
LABELS = ("normal", "anomaly", "unknown")

#: Key under which the unparsed attribute string of a file name is kept.
RAW_ATTRIBUTES_KEY = "_raw"
#: Key for a trailing attribute token that has no partner (odd number of tokens).
EXTRA_ATTRIBUTE_KEY = "_extra"

_DCASE = re.compile(r"^section_(?P<section>\d+)_(?P<domain>source|target)_(?P<split>train|test)_"
                    r"(?P<label>normal|anomaly)_(?P<clip>\d+)(?:_(?P<attrs>.+))?$", re.IGNORECASE)
_PREFIXED = re.compile(r"^(?P<machine>[A-Za-z0-9][A-Za-z0-9-]*)_(?P<split>train|test)_(?P<rest>section_.+)$", re.I)
_DCASE_EVAL = re.compile(r"^section_(?P<section>\d+)_(?P<clip>\d+)$", re.IGNORECASE)
_DCASE2020 = re.compile(r"^(?P<label>normal|anomaly)_id_(?P<section>\d+)_(?P<clip>\d+)$", re.IGNORECASE)
_DCASE2020_EVAL = re.compile(r"^id_(?P<section>\d+)_(?P<clip>\d+)$", re.IGNORECASE)
#: The file-name layouts (a name matching one of them is a DCASE name, kept in score files).
_NAME_PATTERNS = (_DCASE, _DCASE_EVAL, _DCASE2020, _DCASE2020_EVAL)
_ID_FOLDER = re.compile(r"^id_(?P<section>\d+)$", re.IGNORECASE)

_LABEL_FOLDERS = {"normal": "normal", "anomaly": "anomaly", "abnormal": "anomaly"}
#: Folder names that describe the layout, never the machine type.
_LAYOUT_FOLDERS = frozenset({"train", "test", "val", "valid", "validation", "normal", "anomaly", "abnormal", "source",
                             "target", "dev_data", "eval_data", "dev", "eval", "raw", "audio", "wav"})


@dataclass(frozen=True)
class ClipRecord:
    """One audio clip and what its path says about it (docs/architecture.md, ``dgmix.data``).

    Attributes:
        path: Where the clip is.
        machine: Machine type, canonical spelling for the DCASE types (``"ToyCar"``, ``"fan"``...).
        section: Two-digit section (DCASE 2021+), machine ID (DCASE 2020, MIMII) or ``"00"``.
        domain: ``"source"``, ``"target"`` or ``"unknown"``.
        split: ``"train"`` or ``"test"``.
        label: ``"normal"``, ``"anomaly"`` or ``"unknown"``.
        attributes: Attribute key -> value, from the file name (tokens paired ``key_value``;
            the unparsed string under ``"_raw"``) and from ``attributes_XX.csv`` when present.
        clip_id: The clip number as written in the name (``"0025"``), or ``None``.
        split_given: ``False`` when the layout has no train/test split (MIMII 2019, plain
            ``<machine>/{normal,anomaly}``); :func:`dgmix.data.split.assign_split` sets ``split``.
    """

    path: Path
    machine: str
    section: str
    domain: str
    split: str
    label: str
    attributes: dict[str, str] = field(default_factory=dict, hash=False, compare=True)
    clip_id: str | None = None
    split_given: bool = True

    def __post_init__(self) -> None:
        for name, allowed in (("domain", DOMAINS), ("split", SPLITS), ("label", LABELS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ValueError(f"ClipRecord.{name} must be one of {allowed}, got {value!r}")

    @property
    def name(self) -> str:
        """The file name (last path component)."""
        return self.path.name

    @property
    def bank_domain(self) -> str:
        """The domain used for training and k-NN banks: ``"unknown"`` counts as ``"source"``.

        Clips with no domain in their name (a plain ``<machine>/train`` folder, MIMII 2019, DCASE
        evaluation names) are a user's normal operating data, the bulk of what a detector
        learns from; the paper's target domain is the few shifted clips, which a layout without
        domains cannot name. This is the one place that decides it (training, fine-tuning pair
        sampling and the domain-aware k-NN banks all read it).
        """
        return "source" if self.domain == "unknown" else self.domain

    @property
    def dcase_name(self) -> str:
        """The file name without a ``<Machine>_{train|test}_`` prefix (the official DCASE name)."""
        return strip_machine_prefix(self.path.name)

    @property
    def score_name(self) -> str:
        """The clip's name in score and decision CSVs (the evaluator pairs rows by this name).

        A name that carries the label (DCASE 2020-2024 development names) or none at all (DCASE
        evaluation names, whose ground truth is keyed by it) is the file name. A clip whose label comes from
        its folder (MIMII 2019, plain layouts) is named as DCASE 2020 named the MIMII clips,
        ``<normal|anomaly>_id_<XX>_<file name>``: unique within a section although MIMII reuses
        ``00000000.wav`` in ``normal/`` and ``abnormal/``, and readable by ``dgmix evaluate``.
        """
        stem = Path(self.dcase_name).stem
        if self.label == "unknown" or any(p.match(stem) for p in _NAME_PATTERNS):
            return self.name
        return f"{self.label}_id_{self.section}_{self.name}"


def canonical_machine(name: str) -> str:
    """Return the canonical spelling of a known machine type, or ``name`` unchanged."""
    return _CANONICAL.get(name.lower(), name)


def strip_machine_prefix(file_name: str) -> str:
    """``"fan_test_section_00_..."`` -> ``"section_00_..."``; other names are returned unchanged."""
    m = _PREFIXED.match(file_name)
    return m.group("rest") if m else file_name


def parse_attributes(text: str | None) -> dict[str, str]:
    """Pair the ``_``-separated tokens of a DCASE attribute string as ``key_value``.

    ``"m-n_W"`` -> ``{"m-n": "W"}``; ``"car_A1_spd_28V_mic_1_noise_1"`` ->
    ``{"car": "A1", "spd": "28V", "mic": "1", "noise": "1"}``; ``"volt_1.5_wt_150"`` ->
    ``{"volt": "1.5", "wt": "150"}``. The whole string is kept under ``"_raw"`` because the pairing
    is a guess (values could contain ``_``); a lone trailing token goes under ``"_extra"``.
    An empty or missing string gives ``{}``.
    """
    if not text:
        return {}
    tokens = text.split("_")
    out = dict(zip(tokens[::2], tokens[1::2]))
    if len(tokens) % 2:
        out[EXTRA_ATTRIBUTE_KEY] = tokens[-1]
    out[RAW_ATTRIBUTES_KEY] = text
    return out


def machine_from_folders(folders: Sequence[str]) -> str | None:
    """Pick the machine type from folder names ordered nearest-first (see module docstring)."""
    known = next((_CANONICAL[f.lower()] for f in folders if f.lower() in _CANONICAL), None)
    other = (f for f in folders if f and f.lower() not in _LAYOUT_FOLDERS and not _ID_FOLDER.match(f))
    return known or next(other, None)


def parse_filename(path: str | Path, machine: str | None = None, split: str | None = None, *,
                   folders: Sequence[str] | None = None) -> ClipRecord:
    """Build the :class:`ClipRecord` for one clip from its path (see module docstring).

    Args:
        path: The clip's path.
        machine: Machine type to use instead of the one the path gives.
        split: Split for names that do not carry one (evaluation, DCASE 2020, MIMII); a split in
            the name itself always wins.
        folders: The folder names above the file, nearest first, that may be used for the
            machine type, split and layout. Default: every parent folder of ``path``.
            :func:`dgmix.data.scan` passes only the folders inside the scanned root, plus the
            root's own name and parents.

    Clips whose layout has no split (MIMII 2019, plain ``<machine>/{normal,anomaly}``) get the
    provisional split ``"test"`` and ``split_given`` false, unless ``split`` was passed.

    Raises:
        InputError: If neither the name nor the folders follow a recognised layout.
    """
    path = Path(path)
    folders = [p.name for p in path.parents if p.name] if folders is None else list(folders)
    if split is not None and split not in SPLITS:
        raise InputError(path, f"split must be one of {SPLITS}, got {split!r}")
    stem = path.stem
    prefixed = _PREFIXED.match(stem)
    if prefixed is not None and _DCASE.match(prefixed["rest"]):
        machine = prefixed["machine"] if machine is None else machine
        stem = prefixed["rest"]
    machine = canonical_machine(machine) if machine is not None else machine_from_folders(folders)
    folder_split = split or next((f.lower() for f in folders if f.lower() in SPLITS), None)

    def record(section: str, domain: str, split: str, label: str, clip: str | None, **kw) -> ClipRecord:
        if machine is None:
            raise InputError(path, "cannot tell the machine type: no machine folder above the file")
        return ClipRecord(path, machine, f"{int(section):02d}", domain, split, label, clip_id=clip, **kw)

    if m := _DCASE.match(stem):
        return record(m["section"], m["domain"].lower(), m["split"].lower(), m["label"].lower(), m["clip"],
                      attributes=parse_attributes(m["attrs"]))
    if m := _DCASE_EVAL.match(stem):
        return record(m["section"], "unknown", folder_split or "test", "unknown", m["clip"])
    if m := _DCASE2020.match(stem):
        label = m["label"].lower()
        return record(m["section"], "source", folder_split or ("test" if label == "anomaly" else "train"), label,
                      m["clip"])
    if m := _DCASE2020_EVAL.match(stem):
        return record(m["section"], "source", folder_split or "test", "unknown", m["clip"])

    # Layouts where the folders, not the name, carry the labels.
    parent = folders[0].lower() if folders else ""
    grandparent = folders[1] if len(folders) > 1 else ""
    label = _LABEL_FOLDERS.get(parent)
    if label is not None and (m := _ID_FOLDER.match(grandparent)):  # MIMII 2019
        return record(m["section"], "unknown", split or "test", label, stem, split_given=split is not None)
    if label is not None and grandparent.lower() == "test":  # plain test/{normal,anomaly}
        return record("00", "unknown", "test", label, stem)
    if label is not None and grandparent and grandparent.lower() not in _LAYOUT_FOLDERS:
        # plain <machine>/{normal,anomaly}: no split in the layout
        return record("00", "unknown", split or "test", label, stem, split_given=split is not None)
    if parent == "train":  # plain train/: all normal
        return record("00", "unknown", "train", "normal", stem)
    raise InputError(path, "file name not recognised (expected section_XX_<source|target>_<train|test>_"
                           "<normal|anomaly>_NNNN[_attrs].wav, section_XX_NNNN.wav, normal_id_XX_NNNNNNNN.wav, or a "
                           "<machine>/train/, <machine>/test/<normal|anomaly>/, <machine>/<normal|anomaly>/, "
                           "<machine>/id_XX/<normal|abnormal>/ folder)")
