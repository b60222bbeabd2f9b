"""Write a synthetic DCASE 2022 Task 2 style development set (the DCASE 2022 layout).

Layout under ``OUT/dev_data``::

    <machine>/train/section_XX_{source|target}_train_normal_NNNN_<attrs>.wav
    <machine>/test/section_XX_{source|target}_test_{normal|anomaly}_NNNN_<attrs>.wav
    <machine>/attributes_XX.csv          file_name,d1p,d1v,d2p,d2v,...  (DCASE 2022 style)
    ground_truth_data/ground_truth_<machine>_section_XX_test.csv    filename,0|1 (1 = anomaly)
    ground_truth_domain/ground_truth_<machine>_section_XX_test.csv  filename,0|1 (1 = target)

Clips are 16-bit PCM mono wav files. Clip numbers ``NNNN`` count from 0 within each
(section, domain, split, label) group, as in DCASE 2022. Every clip has its own random generator,
seeded from ``(seed, machine, section, domain, split, label, index)`` with
:class:`numpy.random.SeedSequence`, so a clip's audio does not depend on how many other clips are
generated, on the order of generation or on the number of worker processes; the same seed gives
byte-identical files.
"""

from __future__ import annotations

import csv
import io
import itertools
import multiprocessing
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from dgmix.errors import InputError
from dgmix.io_atomic import atomic_write_bytes, atomic_write_text
from dgmix.synth.machines import MACHINES, SECTIONS, model
from dgmix.synth.recording import to_pcm16

DOMAINS: tuple[str, ...] = ("source", "target")
SPLITS: tuple[str, ...] = ("train", "test")
LABELS: tuple[str, ...] = ("normal", "anomaly")

#: Largest clip count per group (clip numbers have four digits).
MAX_CLIPS = 10000
#: Folders (under ``dev_data``) of the evaluator-format ground truth: anomaly labels, domains.
_GT_DIRS = ("ground_truth_data", "ground_truth_domain")


def _as_tuple(value: str | Iterable[str]) -> tuple[str, ...]:
    """Items of a string or strings, each possibly a comma list."""
    items = [value] if isinstance(value, str) else value
    return tuple(p.strip() for item in items for p in str(item).split(",") if p.strip())


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Defaults give the documented default set (docs/synthetic-data.md).

    Attributes:
        machines: Machine types (DCASE spelling, case-insensitive on input); default all seven.
        sections: Two-digit sections ("00".."05"); default the development sections 00-02.
        test_sections: Sections that get test clips (None: all of ``sections``). DCASE 2022's
            development set has training clips for sections 00-05 and test clips for 00-02 only.
        train_source: Source-domain training clips per section (DCASE 2022: 990).
        train_target: Target-domain training clips per section (DCASE 2022: 10).
        test_per_group: Test clips per section for each of source-normal, source-anomaly,
            target-normal, target-anomaly (DCASE 2022: 50).
        duration: Clip length in seconds.
        severity: Anomaly strength multiplier (1 = default; 0 makes anomalies sound normal).
        seed: Base seed (non-negative integer).
        sample_rate: Sample rate in Hz (the sound models assume 16 kHz, other rates work).
    """

    machines: tuple[str, ...] = MACHINES
    sections: tuple[str, ...] = ("00", "01", "02")
    test_sections: tuple[str, ...] | None = None
    train_source: int = 10
    train_target: int = 2
    test_per_group: int = 4
    duration: float = 10.0
    severity: float = 1.0
    seed: int = 0
    sample_rate: int = 16000

    def __post_init__(self) -> None:
        canon = {m.lower(): m for m in MACHINES}
        for m in _as_tuple(self.machines):
            if m.lower() not in canon:
                raise InputError("--machines", f"unknown machine type {m!r}; known: {', '.join(MACHINES)}")
        machines = tuple(dict.fromkeys(canon[m.lower()] for m in _as_tuple(self.machines)))
        if not machines:
            raise InputError("--machines", "no machine type given")
        for x in _as_tuple(self.sections):
            if not x.isdigit() or f"{int(x):02d}" not in SECTIONS:
                raise InputError("--sections", f"unknown section {x!r}; known: {', '.join(SECTIONS)}")
        sections = tuple(sorted({f"{int(x):02d}" for x in _as_tuple(self.sections)}))
        if not sections:
            raise InputError("--sections", "no section given")
        object.__setattr__(self, "machines", machines)
        object.__setattr__(self, "sections", sections)
        if self.test_sections is not None:
            tests = tuple(sorted({f"{int(x):02d}" if x.isdigit() else x for x in _as_tuple(self.test_sections)}))
            if not tests or any(x not in sections for x in tests):
                raise InputError("--test-sections", f"must be some of the sections {', '.join(sections)}, got "
                                 f"{', '.join(_as_tuple(self.test_sections)) or 'none'}")
            object.__setattr__(self, "test_sections", tests)
        for name in ("train_source", "train_target", "test_per_group"):
            v = getattr(self, name)
            if not (_is_int(v) and 1 <= v <= MAX_CLIPS):
                raise InputError(f"--{name.replace('_', '-')}", f"must be an integer in [1, {MAX_CLIPS}], "
                                 f"got {v!r}")
        for name, lo, hi, unit in (("duration", 0.5, 600.0, " s"), ("severity", 0.0, 10.0, "")):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and lo <= v <= hi):
                raise InputError(f"--{name}", f"must be between {lo:g} and {hi:g}{unit}, got {v!r}")
        if not (_is_int(self.seed) and self.seed >= 0):
            raise InputError("--seed", f"must be a non-negative integer, got {self.seed!r}")
        if not (isinstance(self.sample_rate, int) and 8000 <= self.sample_rate <= 96000):
            raise InputError("--sample-rate", f"must be an integer in [8000, 96000] Hz, got {self.sample_rate!r}")

    @property
    def n_samples(self) -> int:
        """Samples per clip."""
        return int(np.floor(self.duration * self.sample_rate + 0.5))

    def count(self, domain: str, split: str, label: str, section: str | None = None) -> int:
        """Number of clips of one (domain, split, label) group in one section."""
        if split == "test":
            return 0 if self.test_sections is not None and section not in self.test_sections else self.test_per_group
        if label == "anomaly":
            return 0
        return self.train_source if domain == "source" else self.train_target


#: Named data sets (``dgmix synth OUT --set NAME``). ``default``: what ``dgmix run`` generates when
#: no ``--data`` is given: three machine types of different character (fan: stationary; gearbox:
#: tonal, load-dependent; valve: trains of clicks), 2 sections, 10 source + 2 target training clips
#: and 25 test clips per section and group, so that every official-score cell rests on 25 x 25
#: normal/anomaly pairs per domain and one clip moves an AUC by at most 4 points. ``bench``: the
#: synthetic benchmark, DCASE's shape at a size where one method x option cell trains and scores
#: in minutes on 2 CPU cores: fan and valve, 3 sections, 10x as many source as target training
#: clips, 25 test clips per section and group. ``dcase2022``: the size of one DCASE 2022
#: development + additional machine type (sections 00-05 with 990 + 10 training clips, test clips
#: for 00-02 only, 50 per group), for the scale benchmarks.
SYNTH_SETS: dict[str, SynthConfig] = {
    "default": SynthConfig(machines=("fan", "gearbox", "valve"), sections=("00", "01"), test_per_group=25),
    "bench": SynthConfig(machines=("fan", "valve"), train_source=60, train_target=6, test_per_group=25),
    "dcase2022": SynthConfig(sections=SECTIONS, test_sections=("00", "01", "02"), train_source=990,
                             train_target=10, test_per_group=50),
}


@dataclass(frozen=True)
class ClipSpec:
    """One clip to generate: where it goes and what it is."""

    machine: str
    section: str
    domain: str
    split: str
    label: str
    index: int
    attributes: tuple[tuple[str, str], ...]
    anomaly: str | None = None

    @property
    def attribute_string(self) -> str:
        """``key_value_key_value`` part of the name."""
        return "_".join(f"{k}_{v}" for k, v in self.attributes)

    @property
    def file_name(self) -> str:
        """``section_XX_<domain>_<split>_<label>_NNNN_<attrs>.wav``."""
        return (f"section_{self.section}_{self.domain}_{self.split}_{self.label}_{self.index:04d}_"
                f"{self.attribute_string}.wav")

    @property
    def relpath(self) -> str:
        """Path below ``dev_data``: ``<machine>/<split>/<file name>``."""
        return f"{self.machine}/{self.split}/{self.file_name}"


def clip_seed(
    seed: int, machine: str, section: str, domain: str, split: str, label: str, index: int
) -> np.random.SeedSequence:
    """Seed sequence of one clip; depends only on its identity, not on counts or order."""
    key = (MACHINES.index(machine), int(section), DOMAINS.index(domain), SPLITS.index(split),
           LABELS.index(label), int(index))
    return np.random.SeedSequence(entropy=int(seed), spawn_key=key)


def plan(cfg: SynthConfig) -> list[ClipSpec]:
    """Every clip of ``cfg`` in a fixed order (machine, section, split, domain, label, index)."""
    specs: list[ClipSpec] = []
    groups = itertools.product(cfg.machines, cfg.sections, SPLITS, DOMAINS, LABELS)
    for machine, section, split, domain, label in groups:
        mdl = model(machine)
        for i in range(cfg.count(domain, split, label, section)):
            attrs = tuple(mdl.attributes(section, domain, i).items())
            kind = mdl.anomaly_kind(section, i) if label == "anomaly" else None
            specs.append(ClipSpec(machine, section, domain, split, label, i, attrs, kind))
    return specs


def render_clip(spec: ClipSpec, cfg: SynthConfig) -> np.ndarray:
    """Synthesise one clip (float32, nominal range [-1, 1])."""
    rng = np.random.default_rng(clip_seed(cfg.seed, spec.machine, spec.section, spec.domain, spec.split, spec.label,
                                          spec.index))
    return model(spec.machine).render(rng, cfg.n_samples, cfg.sample_rate, spec.section, dict(spec.attributes),
                                      spec.anomaly, cfg.severity)


def _write_chunk(base: Path, cfg: SynthConfig, specs: Sequence[ClipSpec]) -> int:
    for spec in specs:
        buf = io.BytesIO()  # encode in memory, then one write: faster than sf.write to a path
        sf.write(buf, to_pcm16(render_clip(spec, cfg)), cfg.sample_rate, subtype="PCM_16", format="WAV")
        atomic_write_bytes(base / spec.relpath, buf.getbuffer(), fsync=False)  # regenerable: no fsync
    return len(specs)


@dataclass
class SynthReport:
    """What :func:`generate` wrote and how fast."""

    root: Path
    n_clips: int
    audio_seconds: float
    wall_seconds: float
    workers: int

    def summary(self) -> str:
        """One line: clips written, seconds, clips/s."""
        rate = self.n_clips / self.wall_seconds if self.wall_seconds > 0 else float("inf")
        return (f"wrote {self.n_clips} clips ({self.audio_seconds:.0f} s of audio) to {self.root} in "
                f"{self.wall_seconds:.1f} s: {rate:.1f} clips/s (workers={self.workers})")


def _write_csv(path: Path, rows: Iterable[Sequence[object]]) -> None:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    atomic_write_text(path, buf.getvalue(), fsync=False)


def _prepare(root: Path, cfg: SynthConfig, overwrite: bool) -> None:
    """Create folders; refuse (or, with ``overwrite``, clear) earlier output of these machines."""
    if root.exists() and not root.is_dir():
        raise InputError(root, "output exists and is not a folder")
    for machine in cfg.machines:
        mdir = root / machine
        old = [p for sub in SPLITS for p in (mdir / sub).glob("*.wav")] + list(mdir.glob("attributes_*.csv"))
        old += [p for kind in _GT_DIRS for p in (root / kind).glob(f"ground_truth_{machine}_section_*_test.csv")]
        if old and not overwrite:
            raise InputError(mdir, f"already holds {len(old)} generated files; choose an empty output folder or pass "
                                   "--overwrite")
        for p in old:
            p.unlink()
        for sub in SPLITS:
            (mdir / sub).mkdir(parents=True, exist_ok=True)
    for kind in _GT_DIRS:
        (root / kind).mkdir(parents=True, exist_ok=True)


def write_metadata(root: Path, specs: Sequence[ClipSpec]) -> None:
    """Write ``attributes_XX.csv`` and the evaluator-format ground-truth files for ``specs``."""
    groups: dict[tuple[str, str], list[ClipSpec]] = {}
    for s in specs:
        groups.setdefault((s.machine, s.section), []).append(s)
    for (machine, section), items in sorted(groups.items()):
        width = max(len(s.attributes) for s in items)
        header = ["file_name"] + [f"d{i}{x}" for i in range(1, width + 1) for x in ("p", "v")]
        rows = []
        for s in sorted(items, key=lambda s: s.relpath):
            pairs = [x for kv in s.attributes for x in kv]
            rows.append([s.relpath, *pairs] + [""] * (2 * width - len(pairs)))
        _write_csv(root / machine / f"attributes_{section}.csv", [header, *rows])
        test = sorted((s for s in items if s.split == "test"), key=lambda s: s.file_name)
        if test:
            name = f"ground_truth_{machine}_section_{section}_test.csv"
            _write_csv(root / "ground_truth_data" / name, [[s.file_name, int(s.label == "anomaly")] for s in test])
            _write_csv(root / "ground_truth_domain" / name, [[s.file_name, int(s.domain == "target")] for s in test])


def generate(
    out: Path, cfg: SynthConfig, workers: int = 1, progress: bool = True, overwrite: bool = False
) -> SynthReport:
    """Generate the synthetic development set of ``cfg`` under ``out / "dev_data"``.

    Args:
        out: Output folder (created); clips go to ``out/dev_data/<machine>/{train,test}``.
        cfg: What to generate.
        workers: Worker processes (1 = in this process). The files do not depend on it.
        progress: Show a progress bar on stderr.
        overwrite: Replace files of an earlier run for the same machine types (otherwise such
            files are an error, because stale clips would mix into the new set).

    Returns:
        A :class:`SynthReport` (counts and throughput).
    """
    if not isinstance(workers, int) or workers < 1:
        raise InputError("--workers", f"must be a positive integer, got {workers!r}")
    from tqdm import tqdm

    root = Path(out) / "dev_data"
    t0 = time.perf_counter()
    _prepare(root, cfg, overwrite)
    specs = plan(cfg)
    step = 16 if workers == 1 else max(4, min(32, len(specs) // (8 * workers) or 4))
    chunks = [specs[i:i + step] for i in range(0, len(specs), step)]
    with tqdm(total=len(specs), unit="clip", desc="synth", leave=False, disable=not progress) as bar:
        if workers == 1:
            for chunk in chunks:
                bar.update(_write_chunk(root, cfg, chunk))
        else:
            # "fork" where available: works from scripts without a ``__main__`` guard and starts
            # fast; the workers only use numpy/scipy/soundfile, never torch, so threads a parent
            # may have started (torch in the CLI process) do not matter. Elsewhere "spawn".
            ctx = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                for fut in as_completed([pool.submit(_write_chunk, root, cfg, chunk) for chunk in chunks]):
                    bar.update(fut.result())
    write_metadata(root, specs)
    return SynthReport(root=root, n_clips=len(specs), audio_seconds=len(specs) * cfg.n_samples / cfg.sample_rate,
                       wall_seconds=time.perf_counter() - t0, workers=workers)
