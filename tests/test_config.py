"""Config: presets, file overrides with validation, the resolved copy in the run dir."""

from __future__ import annotations

import pytest
import yaml

from dgmix.cli.run import scoring_overrides
from dgmix.config import config_from_dict, load_config, write_config
from dgmix.errors import InputError
from dgmix.pipeline import method_scoring


def test_paper_preset_is_spec_section_4():
    cfg = load_config("paper")
    p = cfg.pretrain
    assert (p.batch_size, p.epochs, p.weight_decay, p.warmup_epochs, p.final_lr) == (1024, 100, 1e-4, 10, 0.002)
    assert p.base_lr_per_256 * p.batch_size / 256 == pytest.approx(0.8)
    assert (p.gamma, p.mu, p.nu) == (25.0, 25.0, 1.0)
    f = cfg.finetune
    assert (f.lr, f.weight_decay, f.batch_size, f.epochs) == (1e-4, 1e-4, 64, 20)
    b = cfg.baseline
    assert (b.lr, b.batch_size, b.epochs) == (1e-5, 32, 20)
    assert cfg.scoring.pooling == "mean" and cfg.scoring.k == 1 and not cfg.scoring.domain_aware
    # the paper-faithful path: every method mean-pooled, section-ID fine-tuning
    assert cfg.scoring.logmel_pooling == "same" and cfg.finetune.classes == "section"


def test_cpu_preset_uses_the_recommended_detector():
    cfg = load_config("cpu")
    assert cfg.scoring.logmel_pooling == "max"  # docs/results.md: log-mel max over time, 1-NN
    assert cfg.scoring.pooling == "mean" and not cfg.scoring.window_level and not cfg.scoring.domain_aware
    assert cfg.finetune.classes == "auto"
    assert method_scoring("logmel", cfg.scoring).pooling == "max"
    for m in ("baseline", "scratch", "vicreg", "dgmix"):
        assert method_scoring(m, cfg.scoring).pooling == "mean"
    # --pooling sets every method's pooling, logmel included
    over = scoring_overrides("gwrp", None, True)
    cfg2 = load_config("cpu", overrides={"scoring": over})
    assert cfg2.scoring.domain_aware and method_scoring("logmel", cfg2.scoring).pooling == "gwrp"
    assert scoring_overrides(None, None, None) == {}


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
    ("- a\n- b\n", "mapping"),
])
def test_invalid_files(tmp_path, text, needle):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=needle) as exc:
        load_config("paper", path)
    assert str(path) in str(exc.value) and "\n" not in str(exc.value)
