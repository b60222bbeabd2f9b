"""Training data for one machine type: cached log-mel features, window index, section/domain labels.

Windows are never materialised for the whole dataset: :class:`dgmix.features.WindowDataset`
slices them out of the per-clip feature arrays by index arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from dgmix.data import ClipRecord
from dgmix.errors import InputError
from dgmix.features import FeatureCache, FeatureParams, WindowDataset


def make_cache(cache_dir: Path, params: FeatureParams) -> FeatureCache:
    """The feature cache for ``params`` (spectrogram and loader settings) under ``cache_dir``."""
    return FeatureCache(cache_dir, params)


@dataclass
class ClipSet:
    """The clips of one machine type and split, with their features and window labels."""

    machine: str
    records: list[ClipRecord]
    features: list[np.ndarray]
    windows: WindowDataset
    section_names: list[str]  # section index -> section id ("00", ...)
    clip_section: np.ndarray  # (n_clips,) section index
    clip_domain: np.ndarray  # (n_clips,) 0 = source (or unknown, ClipRecord.bank_domain), 1 = target
    class_names: list[str]  # classifier target index -> class name (see ``class_keys``)
    clip_class: np.ndarray  # (n_clips,) classifier target index

    @property
    def n_windows(self) -> int:
        return len(self.windows)

    def window_sections(self, idx: np.ndarray) -> torch.Tensor:
        """Section index of each window in ``idx``."""
        return torch.from_numpy(self.clip_section[self.windows.clip_of(idx)])


ClassMode = Literal["section", "section+attributes", "auto"]


def class_keys(records: list[ClipRecord], mode: ClassMode = "section") -> list[str]:
    """The classification target of each clip for fine-tuning.

    ``section``: the section ID, as the paper does (§3.4). ``section+attributes``: the
    section plus the clip's attribute values (e.g. ``00|pat=02``), the auxiliary task of the DCASE
    2023 baselines; a dataset with a single section (the valve few-shot set) otherwise gives a
    one-class classifier whose KL loss is identically zero. ``auto``: ``section`` when the
    training data holds two or more sections, else ``section+attributes``. Interpretation beyond the
    paper, hence a config option (``finetune.classes``); clips without attributes keep their section,
    and bookkeeping keys (``_raw``, the unparsed name) are ignored.
    """
    if mode == "auto":
        mode = "section" if len({r.section for r in records}) >= 2 else "section+attributes"
    if mode == "section":
        return [r.section for r in records]
    if mode != "section+attributes":
        raise ValueError(f"unknown class mode {mode!r}")
    keys = []
    for r in records:
        attrs = ",".join(f"{k}={v}" for k, v in sorted(r.attributes.items()) if not k.startswith("_"))
        keys.append(f"{r.section}|{attrs}" if attrs else r.section)
    return keys


def load_clipset(records: list[ClipRecord], cache: FeatureCache, params: FeatureParams,
                 section_names: list[str] | None = None, classes: ClassMode = "section") -> ClipSet:
    """Load (or compute) features for ``records``; unreadable clips raise ``InputError``."""
    if not records:
        raise InputError("data", "no clips selected")
    machine = records[0].machine
    feats = [cache.get(r.path) for r in records]
    if section_names is None:
        section_names = sorted({r.section for r in records})
    index = {s: i for i, s in enumerate(section_names)}
    unknown = sorted({r.section for r in records} - set(index))
    if unknown:
        raise InputError(records[0].path.parent, f"sections {unknown} were not seen in training")
    clip_section = np.array([index[r.section] for r in records], dtype=np.int64)
    clip_domain = np.array([int(r.bank_domain == "target") for r in records], dtype=np.int64)
    keys = class_keys(records, classes)
    class_names = sorted(set(keys))
    class_index = {k: i for i, k in enumerate(class_names)}
    clip_class = np.array([class_index[k] for k in keys], dtype=np.int64)
    windows = WindowDataset(feats, frames=params.frames, hop=params.window_hop, labels=clip_class)
    short = [records[i].path for i in np.flatnonzero(windows.index.counts == 0)]
    if short:
        raise InputError(short[0], f"clip is shorter than one window ({params.frames} frames)")
    return ClipSet(machine, records, feats, windows, section_names, clip_section, clip_domain,
                   class_names, clip_class)

