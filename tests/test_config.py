"""Config: presets, file overrides with validation, the resolved copy in the run dir."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from dgmix.config import DEFAULT_PRESET, config_from_dict, load_config, write_config
from dgmix.errors import InputError
from dgmix.features import FeatureParams
from dgmix.methods import get_method, method_names, resolve_scoring


def _pooling(method: str, cfg) -> str:
    return resolve_scoring(cfg.scoring, get_method(method)).pooling


#: The fields of the training-side sections, in order, in every preset.
SECTION_FIELDS = {
    "features": ["sample_rate", "n_fft", "hop_length", "n_mels", "frames", "window_hop", "channel", "pad",
                 "allow_silence"],
    "model": ["width_mult", "embed_dim", "expander_hidden", "expander_layers", "classifier_hidden"],
    "pretrain": ["method", "epochs", "batch_size", "lr", "weight_decay", "optimizer", "warmup_epochs", "final_lr",
                 "gamma", "mu", "nu", "mixup_alpha", "windows_per_epoch", "joined_views", "amp", "cuda_graphs"],
    "finetune": ["epochs", "batch_size", "lr", "weight_decay", "gamma", "mixup_alpha", "pair_shares",
                 "windows_per_epoch", "joined_views", "cuda_graphs", "classes"],
    "baseline": ["epochs", "batch_size", "lr", "windows_per_epoch"],
    "split": ["test_normals", "seed"],
    "report": ["enabled", "tsne"],
}


@pytest.mark.parametrize("preset", ["paper", "cpu", "tiny"])
def test_resolved_config_has_exactly_the_training_fields(preset, tmp_path):
    data = yaml.safe_load(write_config(load_config(preset), tmp_path).read_text())
    assert list(data)[:2] == ["preset", "seed"]
    for section, names in SECTION_FIELDS.items():
        assert list(data[section]) == names, section


def test_paper_preset_is_the_papers_schedule():
    from dgmix.training.pretrain import peak_lr

    cfg = load_config("paper")
    p = cfg.pretrain
    assert (p.batch_size, p.epochs, p.weight_decay, p.warmup_epochs, p.final_lr) == (1024, 100, 1e-4, 10, 0.002)
    assert p.lr is None and p.optimizer == "lars" and peak_lr(p) == pytest.approx(0.8)
    assert (p.gamma, p.mu, p.nu) == (25.0, 25.0, 1.0)
    f = cfg.finetune
    assert (f.lr, f.weight_decay, f.batch_size, f.epochs) == (1e-4, 1e-4, 64, 20)
    b = cfg.baseline
    assert (b.lr, b.batch_size, b.epochs) == (1e-5, 32, 20)
    assert cfg.scoring.pooling == "mean" and cfg.scoring.backend == "1nn" and not cfg.scoring.per_domain
    # the paper-faithful path: every paper method mean-pooled, section-ID fine-tuning
    assert cfg.finetune.classes == "section" and cfg.features == FeatureParams()
    for m in method_names(paper_only=True):
        assert _pooling(m, cfg) == "mean"


def test_methods_recommend_their_scoring():
    cfg = load_config("cpu")
    assert _pooling("logmel", cfg) == "max"  # what remains without the choice below
    # docs/results.md §6.3: logmel's scoring is chosen on its training clips
    assert resolve_scoring(cfg.scoring, get_method("logmel")).select == "pseudo"
    assert resolve_scoring(cfg.scoring, get_method("dgmix")).select == "none"
    # fields named for a method are used as written: the choice is off unless select is named too
    gmm = load_config("cpu", overrides={"scoring": {"per_method": {"logmel": {"backend": "gmm-diag"}}}})
    got = resolve_scoring(gmm.scoring, get_method("logmel"))
    assert (got.select, got.backend, got.pooling) == ("none", "gmm-diag", "max")
    both = load_config("cpu", overrides={"scoring": {"per_method": {"logmel": {"backend": "gauss-lw",
                                                                               "select": "pseudo"}}}})
    assert resolve_scoring(both.scoring, get_method("logmel")).select == "pseudo"
    assert cfg.scoring.pooling == "mean" and not cfg.scoring.per_domain
    assert cfg.finetune.classes == "auto"
    for m in ("baseline", "scratch", "vicreg", "dgmix"):
        assert _pooling(m, cfg) == "mean"
    # the same field for every method: logmel's own recommendation still applies on top of it
    cfg2 = load_config("cpu", overrides={"scoring": {"pooling": "gwrp", "per_domain": True}})
    assert cfg2.scoring.per_domain and _pooling("logmel", cfg2) == "max" and _pooling("dgmix", cfg2) == "gwrp"


def test_per_method_scoring_map(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("scoring:\n  per_method:\n    dgmix: {pooling: gwrp, per_domain: true}\n"
                    "    logmel: {pooling: mean}\n")
    cfg = load_config("cpu", path)
    dg = resolve_scoring(cfg.scoring, get_method("dgmix"))
    assert dg.pooling == "gwrp" and dg.per_domain and dg.per_method == {}
    assert _pooling("logmel", cfg) == "mean" and _pooling("vicreg", cfg) == "mean"
    # the map is checked when the config is read: field names and values
    path.write_text("scoring:\n  per_method:\n    dgmix: {pooling: median}\n")
    with pytest.raises(InputError, match="scoring.per_method.dgmix.pooling must be one of"):
        load_config("cpu", path)
    path.write_text("scoring:\n  per_method:\n    dgmix: {poling: max}\n")
    with pytest.raises(InputError, match="unknown config field 'scoring.per_method.dgmix.poling'"):
        load_config("cpu", path)


def test_every_verb_defaults_to_the_same_preset():
    from typer.testing import CliRunner

    from dgmix.cli import app

    assert DEFAULT_PRESET == "cpu"
    for verb in ("run", "pretrain", "finetune"):
        out = CliRunner().invoke(app, [verb, "--help"], env={"COLUMNS": "200"}).output
        assert f"default {DEFAULT_PRESET}, the same for every verb" in " ".join(out.split()), verb


def test_feature_settings_are_one_validated_type(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("features:\n  n_mels: 64\n  hop_length: 256\n  window_hop: 4\n")
    cfg = load_config("tiny", path)
    assert isinstance(cfg.features, FeatureParams)
    f = cfg.features
    assert (f.n_mels, f.hop_length, f.window_hop) == (64, 256, 4)
    assert config_from_dict(cfg.to_dict()) == cfg
    path.write_text("features:\n  n_mels: 0\n")  # FeatureParams' own check
    with pytest.raises(InputError, match="features: .*n_mels") as exc:
        load_config("tiny", path)
    assert "\n" not in str(exc.value)


def test_toml_reader_falls_back_to_tomli_without_tomllib(tmp_path, monkeypatch):
    """Python 3.10 has no tomllib; the declared range (>= 3.10) must still read TOML configs. The
    config module is executed afresh, under another name, with ``import tomllib`` failing."""
    import importlib.util

    import dgmix.config

    path = tmp_path / "c.toml"
    path.write_text("[pretrain]\nepochs = 3\n")
    monkeypatch.setitem(sys.modules, "tomllib", None)  # "import tomllib" now raises ModuleNotFoundError
    spec = importlib.util.spec_from_file_location("dgmix_config_without_tomllib", dgmix.config.__file__)
    fresh = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, fresh)
    spec.loader.exec_module(fresh)
    assert fresh.tomllib.__name__ == "tomli"
    assert fresh.read_config_file(path) == {"pretrain": {"epochs": 3}}


@pytest.mark.parametrize("suffix,text", [
    (".yaml", "pretrain:\n  epochs: 3\n  lr: 0.5\nscoring:\n  pooling: max\n"),
    (".toml", "[pretrain]\nepochs = 3\nlr = 0.5\n[scoring]\npooling = \"max\"\n"),
])
def test_file_overrides(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    cfg = load_config("cpu", path)
    assert cfg.pretrain.epochs == 3 and cfg.pretrain.lr == 0.5 and cfg.scoring.pooling == "max"
    out = write_config(cfg, tmp_path / "run")
    again = config_from_dict(yaml.safe_load(out.read_text()))
    assert again == cfg


@pytest.mark.parametrize("text,needle", [
    ("pretrain:\n  epochs: three\n", "pretrain.epochs must be an integer"),
    ("scoring:\n  pooling: median\n", "scoring.pooling must be one of"),
    ("nope: 1\n", "unknown config field 'nope'"),
    ("pretrain:\n  batch_size: 1\n", "batch_size must be >= 2"),
    ("finetune:\n  pair_shares: [1, 1]\n", "pair_shares must be three"),
    ("finetune:\n  pair_shares: [1, x, 1]\n", r"finetune.pair_shares\[1\] must be a number"),
    ("finetune:\n  pair_scope: section\n", "unknown config field 'finetune.pair_scope'"),
    ("- a\n- b\n", "mapping"),
])
def test_invalid_files(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=needle) as exc:
        load_config("paper", path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)


def _interpreter(version: str) -> str | None:
    """A Python ``version`` interpreter on PATH or in pyenv, if this machine has one."""
    import glob
    import os
    import shutil

    candidates = [shutil.which(f"python{version}")]
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    candidates += sorted(glob.glob(os.path.join(root, "versions", f"{version}.*", "bin", f"python{version}")))
    for c in candidates:
        if c and subprocess.run([c, "-c", "pass"], capture_output=True).returncode == 0:
            return c
    return None


def test_sources_fit_the_declared_minimum_python():
    """pyproject's requires-python lower bound: every module parses there, and every standard-library
    module the package imports exists there, unless the import sits in a try block (dgmix.config's
    tomllib -> tomli fallback)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    declared = re.search(r'requires-python\s*=\s*">=(\d+\.\d+)"', (root / "pyproject.toml").read_text()).group(1)
    python = _interpreter(declared)
    if python is None:
        pytest.skip(f"no Python {declared} interpreter on this machine")
    code = r"""
import ast, importlib.util, pathlib, sys
third = {"torch", "numpy", "scipy", "soundfile", "sklearn", "threadpoolctl", "typer", "tqdm", "yaml", "dgmix", "tomli",
         "matplotlib",
         # the [serve] and [export] extras
         "fastapi", "starlette", "uvicorn", "multipart", "python_multipart", "onnx", "onnxruntime"}
bad = []
for f in sorted(pathlib.Path(sys.argv[1]).rglob("*.py")):
    tree = ast.parse(f.read_text(), str(f))
    in_try = {id(m) for t in ast.walk(tree) if isinstance(t, ast.Try) for s in t.body for m in ast.walk(s)}
    for n in ast.walk(tree):
        if id(n) in in_try:
            continue
        names = [a.name for a in n.names] if isinstance(n, ast.Import) else (
            [n.module] if isinstance(n, ast.ImportFrom) and n.level == 0 else [])
        for name in names:
            top = name.split(".")[0]
            if top not in third and importlib.util.find_spec(top) is None:
                bad.append(f"{f}: {top}")
print("\n".join(bad))
sys.exit(1 if bad else 0)
"""
    res = subprocess.run([python, "-c", code, str(root / "src" / "dgmix")], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("text,key", [
    ("model:\n  activation: relu\n", "model.activation"),
    ("model:\n  input_norm: per_bin\n", "model.input_norm"),
    ("pretrain:\n  reestimate_bn: true\n", "pretrain.reestimate_bn"),
    ("pretrain:\n  adamw_lr: 0.001\n", "pretrain.adamw_lr"),
    ("finetune:\n  consistency_scale: batch_std\n", "finetune.consistency_scale"),
    ("features:\n  fmax: 7000\n", "features.fmax"),
    ("split:\n  max_test_fraction: 0.4\n", "split.max_test_fraction"),
    ("report:\n  paper_reference: on\n", "report.paper_reference"),
])
def test_removed_settings_are_refused_in_one_line_naming_the_key(tmp_path, text, key):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=f"unknown config field '{key}'") as exc:
        load_config("cpu", path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
