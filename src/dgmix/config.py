"""Typed, validated configuration: presets, YAML/TOML overrides, and the resolved copy in every run dir.

Nothing here is a global: every stage receives the dataclass it needs. The generic, type-checked
override machinery lives in :mod:`dgmix.overrides`. ``load_config`` starts
from a preset (``paper``, ``cpu`` or ``tiny``), applies a config file that may override any field,
validates types and ranges, and returns a :class:`RunConfig`. ``write_config`` writes the resolved
configuration as YAML into a run directory.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from dgmix.augment.pairs import pair_shares
from dgmix.candidates import SCORING_CANDIDATES, parse_backend
from dgmix.data.split import SplitConfig, check_test_normals
from dgmix.errors import InputError
from dgmix.features.logmel import FeatureParams
from dgmix.io_atomic import atomic_write_text
from dgmix.overrides import apply_overrides

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, installed as ``tomli`` (pyproject)
    import tomli as tomllib

PRESETS: tuple[str, ...] = ("paper", "cpu", "tiny")
#: ``pretrain.cuda_graphs`` / ``finetune.cuda_graphs``: "none" (eager), "forward" (CUDA graphs of
#: the model's forward and backward, :mod:`dgmix.training.graphs`) or "step" (the whole training
#: step in one CUDA graph, :mod:`dgmix.training.step_graph`).
CudaGraphs = Literal["none", "forward", "step"]
#: The booleans of earlier config files and run directories: false -> "none", true -> "forward".
LEGACY_CUDA_GRAPHS = {False: "none", True: "forward"}
#: The preset every verb (run, pretrain, finetune) starts from when ``--preset`` is not given: a
#: schedule sized for a 2-core laptop. ``--preset paper`` is the paper's schedule (§3.3-3.4).
DEFAULT_PRESET = "cpu"


@dataclass
class ModelConfig:
    """Encoder (Table 1: MobileNetV2 rows, ReLU6) and expander (paper §3.3: every layer followed by
    BN and ReLU); the section classifier of fine-tuning (paper §3.4)."""

    width_mult: float = 0.5
    embed_dim: int = 320
    expander_hidden: int = 1280
    expander_layers: int = 3
    classifier_hidden: int = 128


@dataclass
class PretrainConfig:
    """Self-supervised pre-training (paper §3.3).

    ``lr: null`` is the optimizer's own rule: LARS 0.2 x batch / 256 (the paper's 0.8 at batch
    1024), AdamW 1e-3 (:func:`dgmix.training.pretrain.peak_lr`). ``final_lr`` is where the cosine
    ends for LARS; AdamW ends at the same fraction of its peak. ``optimizer: adamw`` is not in the
    paper: it is there for short CPU runs, where LARS with eta 0.001 hardly moves the convolution
    weights (docs/results.md §5.2), and decays conv/linear weights only. ``joined_views``: one
    forward pass over X, X', X_lambda (BN statistics over all three, so eq. 1 can reach 0 for a
    network that is affine in training mode) instead of one per view; not in the paper
    (:func:`dgmix.training.pretrain.forward_views`). ``windows_per_epoch``: a cap on the windows
    visited per epoch (null: every window of the machine type, as the paper). ``amp``: bf16
    autocast on CUDA. ``cuda_graphs`` as in :class:`FinetuneConfig`.
    """

    method: Literal["dgmix", "vicreg"] = "dgmix"
    epochs: int = 100
    batch_size: int = 1024
    lr: float | None = None
    weight_decay: float = 1e-4
    optimizer: Literal["lars", "adamw"] = "lars"
    warmup_epochs: float = 10
    final_lr: float = 0.002
    gamma: float = 25.0  # consistency / invariance coefficient
    mu: float = 25.0  # variance coefficient
    nu: float = 1.0  # covariance coefficient
    mixup_alpha: float = 0.5  # lambda ~ Beta(alpha, alpha), one lambda per pair
    windows_per_epoch: int | None = None
    joined_views: bool = False
    amp: bool = False
    cuda_graphs: CudaGraphs = "none"


@dataclass
class FinetuneConfig:
    """Section-ID fine-tuning with mixup, KL and the consistency constraint (paper §3.4).

    Pairs are drawn within the anchor's section (paper §3.4: "for each section");
    ``pair_shares``: probabilities of [source x source, source x target, target x target] pairs
    (default equal shares: our reading of the paper, which names intra- and inter-domain pairs
    and no proportion), or null (partner uniform within the section: with 990 source and 10
    target clips per section, ~2 % of pairs then involve a target window); see
    :mod:`dgmix.augment.pairs`. AdamW decays conv/linear weights only (biases and BN parameters
    are not decayed; the paper does not say). ``joined_views`` as in pre-training. ``cuda_graphs``
    (not in the paper; the batch-64 step is bound by kernel launches): "none"; "forward", CUDA
    graphs of the model's forward and backward (:mod:`dgmix.training.graphs`); "step", the whole
    step (draws, forward, loss, backward, optimizer update) in one CUDA graph
    (:mod:`dgmix.training.step_graph`). Both need one GPU (refused under DDP); on a CPU "forward"
    does nothing and "step" runs the same step function eagerly. The booleans of older config
    files are read as false -> "none", true -> "forward". ``classes``: classifier
    targets, "section" (paper §3.4), "section+attributes", or "auto" (attributes only when the
    data has a single section; :func:`dgmix.training.data.class_keys`).
    """

    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 1e-4
    gamma: float = 25.0
    mixup_alpha: float = 0.5
    pair_shares: list[float] | None = field(default_factory=lambda: [1.0, 1.0, 1.0])
    windows_per_epoch: int | None = None
    joined_views: bool = False
    cuda_graphs: CudaGraphs = "none"
    classes: Literal["section", "section+attributes", "auto"] = "section"


@dataclass
class BaselineConfig:
    """Official MobileNetV2 baseline of DCASE 2022 Task 2: section classifier, Adam lr 1e-5, 20
    epochs, batch 32."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-5
    windows_per_epoch: int | None = None


@dataclass
class ScoringConfig:
    """Clip embedding, back end and decision threshold (paper §3.5).

    The fields below are the scoring of every method; each method may recommend its own
    (:attr:`dgmix.methods.Method.default_scoring`, e.g. the label-free choice for ``logmel``),
    and ``per_method`` overrides any field for a named method, e.g.
    ``{"logmel": {"pooling": "gwrp"}, "dgmix": {"per_domain": true}}``
    (:func:`dgmix.methods.resolve_scoring`).
    """

    # Pooling of the window embeddings over time (dgmix.scoring.pooling): "mean" (paper §3.5),
    # "max", or "gwrp" with decay gwrp_r (1 = mean, 0 = max).
    pooling: Literal["mean", "max", "gwrp"] = "mean"
    gwrp_r: float = 0.9
    # Back end (dgmix.scoring.backends): "1nn" (paper §3.5), "<k>nn", "<k>nn-std" (standardised),
    # "gmm-diag" or "gauss-lw" (densities, not in the paper; score = negative log-likelihood).
    backend: str = "1nn"
    # One bank / density per section and domain instead of per section (not in the paper).
    per_domain: bool = False
    # Label-free choice of pooling / back end / domain handling per machine type (not in the paper;
    # dgmix.methods.selection): "pseudo" picks among ``select_candidates`` ("pooling/backend/domain"
    # names; empty: the 70-cell grid of dgmix.candidates) by the cross-validated AUC of the training
    # clips against generic pseudo-anomalies, repeated ``select_repeats`` times.
    select: Literal["none", "pseudo"] = "none"
    select_candidates: list[str] = field(default_factory=list)
    select_repeats: int = 5
    # Decision threshold: this quantile of a gamma fit to the training clips' scores (the official
    # baseline's rule), or, when false_alarm_rate is set, the split-conformal threshold at which a new
    # normal clip raises an alarm with probability <= false_alarm_rate (dgmix.scoring.conformal).
    threshold_percentile: float = 0.9
    false_alarm_rate: float | None = None
    per_method: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class ReportConfig:
    """The HTML report that ``dgmix run`` writes at its end and ``dgmix report RUN_DIR`` rebuilds.

    ``tsne``: t-SNE of training clip embeddings per method (the paper's Figure 2, §4.2, shows DG-Mix
    beside VICReg on ToyCar; the report draws every method, coloured by section, domain and
    attribute). Its settings and the histograms' bins are constants of :mod:`dgmix.report`.
    Whether the paper's Tables 2-3 appear beside ours is the run's ``--paper-reference`` flag,
    recorded in ``run_info.json``.
    """

    enabled: bool = True
    tsne: bool = True


@dataclass
class RunConfig:
    """Everything one run needs. ``preset`` records which preset it started from."""

    preset: str = "paper"
    seed: int = 0
    features: FeatureParams = field(default_factory=FeatureParams)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    # Train/test split of layouts that have none (MIMII 2019, plain <machine>/{normal,anomaly}):
    # dgmix.data.split (the MIMII paper's protocol by default).
    split: SplitConfig = field(default_factory=SplitConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _preset_overrides(name: str) -> dict[str, Any]:
    """Field overrides of each preset on top of the paper's defaults."""
    if name == "paper":
        return {}
    if name == "cpu":
        # Sized so that `dgmix run` (3 machine types x 6 methods on the default synthetic set)
        # finishes in minutes on 2 CPU cores: each stage trains for seconds, so these numbers are
        # a smoke test of the method, not a reproduction. The baseline's lr is raised from 1e-5 so
        # that 16 steps move it. AdamW pre-training and one joined forward pass over the views:
        # the combination that benchmarks/ablation.py's fixed rule chose on the synthetic
        # benchmark set (docs/results.md §5); README.md lists every difference from the paper preset.
        return {
            "pretrain": {"epochs": 2, "batch_size": 32, "warmup_epochs": 1, "windows_per_epoch": 256,
                         "final_lr": 0.002 * 32 / 1024, "optimizer": "adamw", "joined_views": True},
            # Fine-tuning falls back to section x attribute classes on one-section data.
            "finetune": {"epochs": 2, "batch_size": 32, "windows_per_epoch": 256,
                         "classes": "auto", "joined_views": True},
            "baseline": {"epochs": 2, "batch_size": 32, "lr": 1e-4, "windows_per_epoch": 512},
        }
    if name == "tiny":
        return {
            "model": {"expander_hidden": 64},
            "pretrain": {"epochs": 2, "batch_size": 16, "warmup_epochs": 1, "windows_per_epoch": 64, "final_lr": 0.001},
            "finetune": {"epochs": 2, "batch_size": 16, "windows_per_epoch": 64},
            "baseline": {"epochs": 2, "batch_size": 16, "lr": 1e-4, "windows_per_epoch": 64},
            # a smoke test of scoring.select (the logmel default): one repeat over six cells of the grid
            "scoring": {"select_repeats": 1, "select_candidates": [
                "max/1nn/none", "max/1nn-std/none", "max/gmm-diag/none", "gwrp0.9/1nn/domain",
                "mean/gauss-lw/none", "mean/gmm-diag/domain"]},
        }
    raise InputError("--preset", f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")


def scoring_with(base: ScoringConfig, overrides: dict[str, Any], source: str,
                 prefix: str = "scoring.") -> ScoringConfig:
    """A validated copy of ``base`` with ``overrides`` applied (``base`` is left unchanged)."""
    if "per_method" in overrides:
        raise InputError(source, f"{prefix}: per_method cannot be set per method")
    return check_candidates(apply_overrides(dataclasses.replace(base, per_method={}), overrides, source, prefix),
                            source, prefix)


def check_candidates(s: ScoringConfig, source: str, prefix: str = "scoring.") -> ScoringConfig:
    """``backend`` must name a back end and ``select_candidates`` cells of the grid (:mod:`dgmix.candidates`)."""
    try:
        parse_backend(s.backend)
    except ValueError as exc:
        raise InputError(source, f"{prefix}backend: {exc}") from None
    unknown = [c for c in s.select_candidates if c not in SCORING_CANDIDATES]
    if unknown:
        raise InputError(source, f"{prefix}select_candidates: unknown candidate(s) {unknown}; names are "
                                 "pooling/backend/domain, e.g. 'max/1nn/none' (dgmix.candidates)")
    return s


def validate(cfg: RunConfig, source: str = "config") -> None:
    """Range checks that types alone cannot express."""
    checks = [
        (cfg.pretrain.epochs >= 1, "pretrain.epochs must be >= 1"),
        (cfg.pretrain.batch_size >= 2, "pretrain.batch_size must be >= 2 (variance needs 2 samples)"),
        (cfg.finetune.batch_size >= 2, "finetune.batch_size must be >= 2"),
        (cfg.finetune.epochs >= 0, "finetune.epochs must be >= 0"),
        (cfg.baseline.epochs >= 1, "baseline.epochs must be >= 1"),
        (cfg.pretrain.warmup_epochs <= cfg.pretrain.epochs, "pretrain.warmup_epochs must not exceed pretrain.epochs"),
        (cfg.pretrain.mixup_alpha > 0, "pretrain.mixup_alpha must be > 0"),
        (cfg.finetune.mixup_alpha > 0, "finetune.mixup_alpha must be > 0"),
        (0.0 <= cfg.scoring.gwrp_r <= 1.0, "scoring.gwrp_r must be in [0, 1]"),
        (cfg.scoring.select_repeats >= 1, "scoring.select_repeats must be >= 1"),
        (0.0 < cfg.scoring.threshold_percentile < 1.0, "scoring.threshold_percentile must be in (0, 1)"),
        (cfg.scoring.false_alarm_rate is None or 0.0 < cfg.scoring.false_alarm_rate < 1.0,
         "scoring.false_alarm_rate must be in (0, 1), or null for the gamma rule"),
        (cfg.features.channel is None or cfg.features.channel >= 0, "features.channel must be >= 0"),
    ]
    if failed := [msg for ok, msg in checks if not ok]:
        raise InputError(source, failed[0])
    try:
        check_test_normals(cfg.split.test_normals, "split.test_normals")
    except InputError as exc:
        raise InputError(source, f"split.test_normals: {exc.problem}") from None
    if cfg.finetune.pair_shares is not None:
        try:
            pair_shares(cfg.finetune.pair_shares)
        except ValueError as exc:
            raise InputError(source, f"finetune.{exc}") from None
    check_candidates(cfg.scoring, source)
    for name, overrides in cfg.scoring.per_method.items():
        scoring_with(cfg.scoring, overrides, source, prefix=f"scoring.per_method.{name}.")


def upgrade_legacy(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a config mapping, changed in place and returned) with the settings of older
    versions in today's form: ``cuda_graphs: false/true`` -> ``"none"/"forward"`` in ``pretrain``
    and ``finetune``. Anything else, including a wrong value, is left for the type checks."""
    for section in ("pretrain", "finetune"):
        stage = data.get(section)
        if isinstance(stage, dict) and isinstance(stage.get("cuda_graphs"), bool):
            stage["cuda_graphs"] = LEGACY_CUDA_GRAPHS[stage["cuda_graphs"]]
    return data


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a YAML (.yaml/.yml) or TOML (.toml) file; JSON is valid YAML."""
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a folder; give the config file itself (YAML or TOML)")
    if not path.is_file():
        raise InputError(path, "a broken symbolic link (or a link loop)" if path.is_symlink()
                         else "config file not found")
    try:
        data = tomllib.loads(path.read_text()) if path.suffix == ".toml" else yaml.safe_load(path.read_text())
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise InputError(path, f"cannot parse config: {exc}") from None
    if not isinstance(data, dict | None):
        raise InputError(path, "config file must hold a mapping of fields")
    return upgrade_legacy(data or {})


def load_config(preset: str = "paper", config_file: Path | None = None,
                overrides: dict[str, Any] | None = None) -> RunConfig:
    """Resolve a preset, then a config file, then explicit overrides (e.g. from CLI flags)."""
    cfg = RunConfig(preset=preset)
    apply_overrides(cfg, _preset_overrides(preset), f"preset {preset}")
    if config_file is not None:
        data = read_config_file(config_file)
        if (named := data.pop("preset", preset)) != preset:
            raise InputError(config_file, f"config says preset {named!r} but --preset is {preset!r}")
        apply_overrides(cfg, data, str(config_file))
    if overrides:
        apply_overrides(cfg, upgrade_legacy(copy.deepcopy(overrides)), "command line")
    validate(cfg, str(config_file) if config_file else f"preset {preset}")
    return cfg


def config_from_dict(data: dict[str, Any], source: str = "checkpoint") -> RunConfig:
    """Rebuild a RunConfig from its ``to_dict`` form (as stored in checkpoints and run dirs)."""
    data = upgrade_legacy(json.loads(json.dumps(data)))  # deep copy
    cfg = RunConfig(preset=data.pop("preset", "paper"))
    apply_overrides(cfg, data, source)
    validate(cfg, source)
    return cfg


def read_run_config(run_dir: Path, name: str = "config.yaml") -> RunConfig:
    """The resolved configuration a run directory holds (what ``--resume`` continues with)."""
    path = Path(run_dir) / name
    return config_from_dict(read_config_file(path), source=str(path))


def resume_config(run_dir: Path, preset: str | None, config_file: Path | None,
                  overrides: dict[str, Any] | None) -> RunConfig:
    """The configuration ``--resume`` continues with: the run's own, after checking that what the
    command gives now (``preset`` if given, the settings of ``config_file`` and ``overrides``)
    asks for nothing else. A difference is refused in one line that names the first setting."""
    saved = read_run_config(run_dir)
    where = Path(run_dir) / "config.yaml"
    if preset is not None and preset != saved.preset:
        raise InputError("--resume", f"the run in {run_dir} used --preset {saved.preset}, not {preset}; "
                         "resume without changing it, or start a new run (--overwrite or another --out)")
    requested = config_from_dict(saved.to_dict(), source=str(where))
    if config_file is not None:
        data = read_config_file(config_file)
        data.pop("preset", None)
        apply_overrides(requested, data, str(config_file))
    if overrides:
        apply_overrides(requested, upgrade_legacy(copy.deepcopy(overrides)), "command line")
    for key, old, new in _differences(saved.to_dict(), requested.to_dict()):
        raise InputError("--resume", f"{key} is {old!r} in the run in {run_dir}, {new!r} now; resume without "
                         "changing it, or start a new run (--overwrite or another --out)")
    return saved


def _differences(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def write_config(cfg: RunConfig, run_dir: Path, name: str = "config.yaml") -> Path:
    """Write the resolved configuration into ``run_dir`` (created if needed)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    path = Path(run_dir) / name
    atomic_write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return path
