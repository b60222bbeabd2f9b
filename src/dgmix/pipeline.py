"""The whole pipeline per machine type and method: train, embed, score, decide, evaluate.

Methods (paper Tables 2-3, plus the simple-features floor of issue 5):

* ``baseline``: official MobileNetV2 section classifier, score = mean log((1-p)/p) (SPEC §7);
* ``scratch``: fine-tuning from a random encoder ("proposed without pre-training");
* ``vicreg``: VICReg + SpecAugment pre-training, then fine-tuning;
* ``dgmix``: DG-Mix pre-training, then fine-tuning;
* ``logmel``: no learning; log-mel frames pooled per clip, same k-NN back end.

Outputs under ``RUN/``: ``<method>/scores/anomaly_score_<machine>_section_<XX>_test.csv`` and
``decision_result_...`` in the official format, ``<method>/<machine>/detector.pt`` bundles,
training run dirs, and ``results.{md,csv,json}``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dgmix.checkpoint import load_checkpoint
from dgmix.config import RunConfig, ScoringConfig, write_config
from dgmix.data import ClipRecord, Dataset, scan
from dgmix.errors import InputError
from dgmix.metrics import SectionResult, section_metrics
from dgmix.metrics.tables import PAPER_RESULTS, ResultsTable
from dgmix.models import Encoder, SectionClassifier
from dgmix.scoring import KNNScorer, fit_gamma_threshold, write_decisions, write_scores
from dgmix.scoring.bundle import DetectorBundle
from dgmix.scoring.embed import classifier_scores
from dgmix.training import finetune, pretrain, train_baseline
from dgmix.training.data import feature_params, make_cache
from dgmix.training.distributed import DistContext

log = logging.getLogger("dgmix.pipeline")

METHODS: tuple[str, ...] = ("baseline", "scratch", "vicreg", "dgmix", "logmel")
PAPER_METHODS: tuple[str, ...] = ("baseline", "scratch", "vicreg", "dgmix")


def method_scoring(method: str, s: ScoringConfig) -> ScoringConfig:
    """The scoring options ``method`` runs with: ``scoring.logmel_pooling`` replaces the pooling of
    the ``logmel`` method unless it is "same"."""
    if method == "logmel" and s.logmel_pooling != "same":
        return dataclasses.replace(s, pooling=s.logmel_pooling)
    return s


def make_scorer(s: ScoringConfig, seed: int = 0) -> KNNScorer:
    """A KNNScorer from the scoring config (paper default: mean pooling, 1-NN, one bank)."""
    return KNNScorer(
        k=s.k, domain_aware=s.domain_aware, window_level=s.window_level,
        aggregation=s.window_aggregation, topk_k=s.topk, pooling=s.pooling, gwrp_r=s.gwrp_r,
        bank_reduce=None if s.bank_reduce == "none" else s.bank_reduce,
        bank_size=s.bank_size if s.bank_reduce != "none" else None, seed=seed,
    )


@dataclass
class MachineData:
    """Train and test clips of one machine type, with their features."""

    machine: str
    train: list[ClipRecord]
    test: list[ClipRecord]
    train_feats: list[np.ndarray]
    test_feats: list[np.ndarray]
    section_names: list[str]

    def sections(self, records: Sequence[ClipRecord]) -> np.ndarray:
        index = {s: i for i, s in enumerate(self.section_names)}
        return np.array([index[r.section] for r in records], dtype=np.int64)


def load_machine(ds: Dataset, machine: str, cfg: RunConfig, cache_dir: Path, progress: bool) -> MachineData:
    train = ds.select(machine=machine, split="train")
    test = ds.select(machine=machine, split="test")
    if not train:
        raise InputError(ds.root, f"no training clips for {machine}")
    cache = make_cache(cache_dir, cfg.features)
    report = cache.fill([r.path for r in train + test], workers=2, progress=progress)
    bad = {Path(p) for p, _ in report.errors}
    for p, msg in report.errors:
        log.warning("skipping %s: %s", p, msg)
    train = [r for r in train if r.path not in bad]
    test = [r for r in test if r.path not in bad]
    sections = sorted({r.section for r in train})
    unseen = sorted({r.section for r in test} - set(sections))
    if unseen:
        log.warning("%s: test sections %s have no training clips and are skipped", machine, unseen)
        test = [r for r in test if r.section in sections]
    return MachineData(
        machine, train, test, [cache.get(r.path) for r in train], [cache.get(r.path) for r in test], sections
    )


@dataclass
class MethodOutput:
    bundle: DetectorBundle
    test_scores: np.ndarray
    train_seconds: float
    notes: dict = field(default_factory=dict)


def _knn_bundle(
    md: MachineData, cfg: RunConfig, method: str, kind: str, encoder: Encoder | None,
    scoring: ScoringConfig, cache: dict | None = None,
) -> tuple[DetectorBundle, np.ndarray]:
    """Fit the k-NN bank on training clips, thresholds on leave-one-out scores; score the test clips.

    ``cache`` (a dict owned by the caller) keeps the window embeddings between scoring options of
    the same trained model, so each window goes through the encoder once."""
    params = feature_params(cfg.features)
    scorer = make_scorer(scoring, cfg.seed)
    bundle = DetectorBundle(kind, md.machine, method, params, md.section_names, scorer=scorer,
                            encoder=encoder, model_config=_model_cfg(cfg))
    cache = {} if cache is None else cache
    if "train" not in cache:
        cache["train"] = bundle.embed(md.train_feats)
        cache["test"] = bundle.embed(md.test_feats)
    tr_emb = cache["train"]
    tr_sec = md.sections(md.train)
    scorer.fit(tr_emb, tr_sec, [r.domain if r.domain != "unknown" else "source" for r in md.train])
    loo = scorer.loo_scores(tr_emb, tr_sec).double().numpy()
    bundle.thresholds.copy_(torch.as_tensor(_thresholds(loo, tr_sec, len(md.section_names), scoring)))
    test_scores = scorer.score(cache["test"], md.sections(md.test)).double().numpy()
    return bundle, test_scores


def _thresholds(scores: np.ndarray, sections: np.ndarray, n: int, scoring: ScoringConfig) -> list[float]:
    return [fit_gamma_threshold(scores[sections == s], scoring.threshold_percentile) for s in range(n)]


def _model_cfg(cfg: RunConfig) -> dict:
    return {"width_mult": cfg.model.width_mult, "embed_dim": cfg.model.embed_dim,
            "classifier_hidden": cfg.model.classifier_hidden}


def _load_encoder(run_dir: Path, cfg: RunConfig) -> Encoder:
    enc = Encoder(width_mult=cfg.model.width_mult, embed_dim=cfg.model.embed_dim)
    enc.load_state_dict(load_checkpoint(run_dir / "encoder.pt")["encoder"])
    return enc.eval()


def train_method(
    method: str, data_root: Path, md: MachineData, cfg: RunConfig, run: Path, cache_dir: Path,
    progress: bool, ctx: DistContext,
) -> tuple[Path | None, float]:
    """Train what ``method`` needs for one machine type; returns (run dir with encoder.pt, seconds)."""
    t0 = time.perf_counter()
    base = run / method / md.machine
    common = dict(progress=progress, ctx=ctx)
    if method == "logmel":
        return None, 0.0
    if method == "baseline":
        train_baseline(data_root, md.machine, cfg, base / "baseline", cache_dir, **common)
        return base / "baseline", time.perf_counter() - t0
    init = None
    if method in ("vicreg", "dgmix"):
        cfg.pretrain.method = method
        pretrain(data_root, md.machine, cfg, base / "pretrain", cache_dir, **common)
        init = base / "pretrain"
    finetune(data_root, md.machine, cfg, base / "finetune", cache_dir, init=init, **common)
    return base / "finetune", time.perf_counter() - t0


def build_detector(
    method: str, md: MachineData, cfg: RunConfig, model_dir: Path | None, scoring: ScoringConfig,
    baseline_knn: bool = False, cache: dict | None = None,
) -> tuple[DetectorBundle, np.ndarray]:
    """Detector bundle and test scores for a trained method (or ``logmel``).

    The baseline scores with its classifier (SPEC §7) unless ``baseline_knn``, which applies the
    k-NN back end to the baseline's encoder (for the method x scoring table)."""
    if method == "logmel":
        return _knn_bundle(md, cfg, method, "logmel", None, scoring, cache)
    if method == "baseline" and baseline_knn:
        state = load_checkpoint(model_dir / "model.pt")
        enc = Encoder(width_mult=cfg.model.width_mult, embed_dim=cfg.model.embed_dim)
        enc.load_state_dict({k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")})
        return _knn_bundle(md, cfg, method, "knn", enc.eval(), scoring, cache)
    if method == "baseline":
        state = load_checkpoint(model_dir / "model.pt")
        enc = Encoder(width_mult=cfg.model.width_mult, embed_dim=cfg.model.embed_dim)
        clf = SectionClassifier(cfg.model.embed_dim, cfg.model.classifier_hidden, len(md.section_names))
        enc.load_state_dict({k[len("encoder."):]: v for k, v in state["model"].items() if k.startswith("encoder.")})
        clf.load_state_dict({k[len("classifier."):]: v for k, v in state["model"].items()
                             if k.startswith("classifier.")})
        params = feature_params(cfg.features)
        bundle = DetectorBundle("classifier", md.machine, method, params, md.section_names,
                                encoder=enc.eval(), classifier=clf.eval(), model_config=_model_cfg(cfg))
        tr_sec = md.sections(md.train)
        tr = classifier_scores(enc, clf, md.train_feats, tr_sec, params.frames, params.window_hop)
        bundle.thresholds.copy_(torch.as_tensor(_thresholds(tr, tr_sec, len(md.section_names), scoring)))
        te = classifier_scores(enc, clf, md.test_feats, md.sections(md.test), params.frames, params.window_hop)
        return bundle, te
    return _knn_bundle(md, cfg, method, "knn", _load_encoder(model_dir, cfg), scoring, cache)


def evaluate_machine(
    md: MachineData, scores: np.ndarray, decisions: np.ndarray | None = None
) -> dict[str, SectionResult]:
    """Per-section DCASE metrics for one machine's test clips (labels from names / ground truth)."""
    out: dict[str, SectionResult] = {}
    for sec in md.section_names:
        idx = [i for i, r in enumerate(md.test) if r.section == sec]
        recs = [md.test[i] for i in idx]
        if not recs or any(r.label == "unknown" or r.domain == "unknown" for r in recs):
            continue
        y = np.array([r.label == "anomaly" for r in recs], dtype=int)
        tgt = np.array([r.domain == "target" for r in recs], dtype=int)
        if y.sum() == 0 or y.sum() == len(y):
            continue
        out[sec] = section_metrics(y, scores[idx], tgt, None if decisions is None else decisions[idx])
    return out


def write_outputs(method_dir: Path, md: MachineData, scores: np.ndarray, decisions: np.ndarray) -> None:
    for sec in md.section_names:
        idx = [i for i, r in enumerate(md.test) if r.section == sec]
        if not idx:
            continue
        names = [md.test[i].name for i in idx]
        write_scores(method_dir / "scores", md.machine, sec, names, scores[idx])
        write_decisions(method_dir / "scores", md.machine, sec, names, decisions[idx])


def scoring_variants(base: ScoringConfig) -> dict[str, ScoringConfig]:
    """The scoring options of the method x scoring table (issue 5), on top of ``base``."""
    def v(**kw) -> ScoringConfig:
        return dataclasses.replace(base, logmel_pooling="same", **kw)

    return {
        "mean": v(pooling="mean", window_level=False, domain_aware=False),
        "max": v(pooling="max", window_level=False, domain_aware=False),
        "gwrp": v(pooling="gwrp", window_level=False, domain_aware=False),
        "window-knn-max": v(window_level=True, window_aggregation="max", domain_aware=False),
        "domain-aware": v(pooling="mean", window_level=False, domain_aware=True),
        "max+domain-aware": v(pooling="max", window_level=False, domain_aware=True),
    }


def write_scoring_table(out: Path, tables: dict[str, ResultsTable], main: ResultsTable) -> Path:
    """``scoring_table.{md,json}``: official score (hmean, %) per method x scoring option, plus each
    option's full results under ``scoring/<option>/``. The paper-faithful cell is dgmix x mean."""
    for name, t in tables.items():
        if t.methods():
            t.write(out / "scoring" / name)
    methods = [m for m in METHODS if any(m in t.methods() for t in tables.values())]
    data = {m: {n: t.official_score(m) for n, t in tables.items() if m in t.methods()} for m in methods}
    for m in main.methods():
        data.setdefault(m, {})["as-run"] = main.official_score(m)
    cols = list(tables) + ["as-run"]
    lines = ["| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for m in methods:
        cells = []
        for c in cols:
            val = data[m].get(c)
            cell = "" if val is None else f"{100 * val:.2f}"
            if m == "dgmix" and c == "mean" and cell:
                cell += " (paper)"
            cells.append(cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    (out / "scoring_table.json").write_text(json.dumps(data, indent=2))
    path = out / "scoring_table.md"
    path.write_text(
        "Official score (hmean of AUC-S, AUC-T, pAUC, %) per method x scoring option.\n"
        "`as-run`: the scoring of the run itself (the baseline: its classifier score).\n\n"
        + "\n".join(lines) + "\n"
    )
    return path


@dataclass
class RunSummary:
    table: ResultsTable
    seconds: float
    out: Path
    timings: dict[str, dict[str, float]]


def run_pipeline(
    data_root: Path,
    out: Path,
    cfg: RunConfig,
    methods: Sequence[str] = PAPER_METHODS,
    machines: Sequence[str] | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
    paper_reference: bool = False,
    extra_scorings: dict[str, ScoringConfig] | None = None,
) -> RunSummary:
    """Run every method on every machine type; write scores, detectors and results tables.

    ``extra_scorings`` (name -> ScoringConfig) re-scores the same trained encoders with other
    scoring options (issue 5's method x scoring table) into ``results_scoring.{md,json}``.
    """
    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_config(cfg, out)
    cache_dir = Path(cache_dir) if cache_dir else out / "cache"
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError("--methods", f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    ds = scan(Path(data_root))
    for path, msg in ds.errors:
        echo(f"skipped {path}: {msg}")
    available = ds.machines()
    chosen = list(machines) if machines else available
    missing = [m for m in chosen if m not in available]
    if missing:
        raise InputError(data_root, f"machine type(s) {missing} not found; found {available}")
    table = ResultsTable()
    extra_tables = {name: ResultsTable() for name in (extra_scorings or {})}
    timings: dict[str, dict[str, float]] = {}
    ctx = DistContext()
    for mi, machine in enumerate(chosen, 1):
        md = load_machine(ds, machine, cfg, cache_dir, progress)
        for method in methods:
            elapsed = time.perf_counter() - t0
            echo(f"[{elapsed:6.0f}s] {machine} ({mi}/{len(chosen)}) {method}: training")
            model_dir, secs = train_method(method, Path(data_root), md, cfg, out, cache_dir, progress, ctx)
            emb_cache: dict = {}
            bundle, scores = build_detector(method, md, cfg, model_dir, method_scoring(method, cfg.scoring),
                                            cache=emb_cache)
            sections = [r.section for r in md.test]
            decisions = bundle.decide(scores, sections)
            write_outputs(out / method, md, scores, decisions)
            bundle.save(out / method / machine / "detector.pt")
            timings.setdefault(method, {})[machine] = secs
            res = evaluate_machine(md, scores, decisions)
            if res:
                table.add_machine(method, machine, res)
                hm = table.machine_summary(method, machine)
                echo(f"         {machine} {method}: AUC-S {hm.auc_source:.3f} AUC-T {hm.auc_target:.3f} "
                     f"pAUC {hm.pauc:.3f} hmean {hm.hmean:.3f}")
            # the baseline's own scores came from its classifier: its encoder is embedded here once
            knn_cache = {} if method == "baseline" else emb_cache
            for name, sc in (extra_scorings or {}).items():
                _, s2 = build_detector(method, md, cfg, model_dir, sc, baseline_knn=True,
                                       cache=knn_cache)
                r2 = evaluate_machine(md, s2)
                if r2:
                    extra_tables[name].add_machine(method, machine, r2)
    seconds = time.perf_counter() - t0
    if table.methods():
        table.write(out, paper=PAPER_RESULTS if paper_reference else None)
    if extra_tables:
        write_scoring_table(out, extra_tables, table)
    return RunSummary(table, seconds, out, timings)
