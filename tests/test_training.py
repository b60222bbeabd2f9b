"""Pre-training and fine-tuning: checkpoints, exact resume, non-finite loss, config handling, precise BN."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dgmix.checkpoint import load_checkpoint
from dgmix.config import load_config
from dgmix.data import ClipRecord
from dgmix.errors import TrainingError
from dgmix.training import finetune, pretrain, train_baseline
from dgmix.training.data import class_keys
from dgmix.training.finetune import build_model
from dgmix.training.log import read_log


def _tiny(method: str = "dgmix", epochs: int = 2):
    cfg = load_config("tiny", overrides={"pretrain": {"method": method, "epochs": epochs}})
    cfg.pretrain.warmup_epochs = 1
    return cfg


@pytest.mark.parametrize("method", ["dgmix", "vicreg"])
def test_pretrain_writes_run_dir(tiny_synth, feature_cache, tmp_path, method):
    run = tmp_path / method
    res = pretrain(tiny_synth, "fan", _tiny(method), run, feature_cache, progress=False)
    assert res.steps == 2 * 4  # 64 windows per epoch / batch 16
    for name in ("config.yaml", "log.jsonl", "last.pt", "encoder.pt"):
        assert (run / name).is_file(), name
    log = read_log(run / "log.jsonl")
    assert len(log) == res.steps
    keys = {"loss", "variance", "covariance", "lr", "windows_per_s", "embedding_std", "epoch", "step"}
    assert keys <= set(log[0])
    assert ("consistency" if method == "dgmix" else "invariance") in log[0]
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["method"] == method
    assert {"model", "optimizer", "scheduler", "rng", "config"} <= set(state)
    # warm-up starts at lr 0
    assert log[0]["lr"] == pytest.approx(0.0)


def test_resume_is_exact(tiny_synth, feature_cache, tmp_path):
    straight = tmp_path / "straight"
    pretrain(tiny_synth, "fan", _tiny(epochs=2), straight, feature_cache, progress=False)

    split = tmp_path / "split"
    cfg = _tiny(epochs=2)
    pretrain(tiny_synth, "fan", cfg, split, feature_cache, progress=False, stop_after_epoch=1)
    assert torch.load(split / "last.pt", weights_only=True)["epoch"] == 1
    pretrain(tiny_synth, "fan", cfg, split, feature_cache, resume=True, progress=False)

    a = torch.load(straight / "last.pt", weights_only=True)["model"]
    b = torch.load(split / "last.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_nonfinite_loss_stops_and_keeps_checkpoint(tiny_synth, feature_cache, tmp_path, monkeypatch):
    run = tmp_path / "nan"
    pretrain(tiny_synth, "fan", _tiny(epochs=1), run, feature_cache, progress=False)
    before = torch.load(run / "last.pt", weights_only=True)["model"]

    from dgmix.training.pretrain import PretrainTask

    real = PretrainTask.step

    def poisoned(self, model, idx, generator):
        terms = real(self, model, idx, generator)
        terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(PretrainTask, "step", poisoned)
    with pytest.raises(TrainingError, match="non-finite loss.*last good checkpoint"):
        pretrain(tiny_synth, "fan", _tiny(epochs=2), run, feature_cache, resume=True, progress=False)
    after = torch.load(run / "last.pt", weights_only=True)
    assert after["epoch"] == 1
    for k in before:
        assert torch.equal(before[k], after["model"][k])


def test_finetune_starts_from_the_pretrained_encoder(tiny_synth, feature_cache, tmp_path):
    pre = tmp_path / "pre"
    pretrain(tiny_synth, "fan", _tiny(epochs=1), pre, feature_cache, progress=False)
    cfg = _tiny()
    cfg.finetune.epochs = 1
    ft = tmp_path / "ft"
    res = finetune(tiny_synth, "fan", cfg, ft, feature_cache, init=pre, progress=False)
    log = read_log(ft / "log.jsonl")
    assert {"loss", "kl", "consistency"} <= set(log[0])
    assert res.steps == 4  # one epoch of 64 windows, batch 16
    enc_pre = load_checkpoint(pre / "encoder.pt")["encoder"]
    ft_state = load_checkpoint(ft / "model.pt")
    assert ft_state["section_names"] == ["00", "01"]
    weights = [k for k in enc_pre if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    # the fine-tuned encoder moved away from the pre-trained one ...
    enc_ft = load_checkpoint(ft / "encoder.pt")["encoder"]
    assert any(not torch.equal(enc_pre[k], enc_ft[k]) for k in weights)
    # ... and started from it: with lr 0 (AdamW's decay is lr * wd) every weight stays the
    # pre-trained one, which a skipped or partial load would not give
    frozen = _tiny()
    frozen.finetune.lr = 0.0
    frozen.finetune.epochs = 1
    finetune(tiny_synth, "fan", frozen, tmp_path / "ft0", feature_cache, init=pre, progress=False)
    enc_ft0 = load_checkpoint(tmp_path / "ft0" / "encoder.pt")["encoder"]
    for k in weights:
        assert torch.equal(enc_pre[k], enc_ft0[k]), k
    torch.manual_seed(frozen.seed)  # what fine-tuning would start from without the load
    unloaded = build_model(frozen, 2).encoder.state_dict()
    assert any(not torch.equal(enc_pre[k], unloaded[k]) for k in weights)


def test_baseline_trains(tiny_synth, feature_cache, tmp_path):
    res = train_baseline(tiny_synth, "fan", _tiny(), tmp_path / "b", feature_cache, progress=False)
    assert "accuracy" in res.last_terms
    cfg = json.loads(json.dumps(load_checkpoint(tmp_path / "b" / "model.pt")["config"]))
    assert cfg["baseline"]["epochs"] == 2


def _rec(section: str, attrs: dict) -> ClipRecord:
    return ClipRecord(path=Path(f"/x/section_{section}_source_train_normal_0000.wav"), machine="valve",
                      section=section, domain="source", split="train", label="normal", attributes=attrs)


def test_class_keys_modes():
    one_section = [_rec("00", {"pat": "00"}), _rec("00", {"pat": "02"}), _rec("00", {})]
    assert class_keys(one_section, "section") == ["00", "00", "00"]
    assert class_keys(one_section, "section+attributes") == ["00|pat=00", "00|pat=02", "00"]
    # auto: attributes only when there is a single section
    assert class_keys(one_section, "auto") == class_keys(one_section, "section+attributes")
    two = [_rec("00", {"b": "1", "a": "2"}), _rec("01", {"a": "2", "b": "1"})]
    assert class_keys(two, "auto") == ["00", "01"]
    assert class_keys(two, "section+attributes") == ["00|a=2,b=1", "01|a=2,b=1"]
    with pytest.raises(ValueError, match="unknown class mode"):
        class_keys(two, "domain")


def test_finetune_on_attribute_classes(tiny_synth, feature_cache, tmp_path):
    cfg = _tiny()
    cfg.finetune.classes = "section+attributes"
    finetune(tiny_synth, "fan", cfg, tmp_path / "ft", feature_cache, init=None, progress=False)
    state = load_checkpoint(tmp_path / "ft" / "model.pt")
    names = state["class_names"]
    assert len(names) > 2 and all("|" in n for n in names)
    assert {n.split("|")[0] for n in names} == {"00", "01"}
    # the classifier's output layer has one unit per class
    assert state["model"]["classifier.net.2.weight"].shape[0] == len(names)


def test_finetune_optimizer_groups_and_pairs(tiny_synth, feature_cache, tmp_path):
    """AdamW groups without decay for biases and BN; finetune.pair_shares -> the task's pairs stay in
    the anchor's section, here all source x target."""
    from dgmix.training.common import training_clips
    from dgmix.training.distributed import DistContext
    from dgmix.training.finetune import FinetuneTask

    cfg = _tiny()
    cfg.finetune.epochs = 1
    cfg.finetune.pair_shares = [0.0, 1.0, 0.0]
    finetune(tiny_synth, "fan", cfg, tmp_path / "ft", feature_cache, init=None, progress=False)
    groups = load_checkpoint(tmp_path / "ft" / "last.pt")["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [cfg.finetune.weight_decay, 0.0]
    clips = training_clips(tiny_synth, "fan", cfg, feature_cache, DistContext(), progress=False)
    task = FinetuneTask(clips, cfg, DistContext())
    idx = torch.arange(clips.n_windows)
    a, b = task.pairs(idx, torch.Generator().manual_seed(0))
    clip = clips.windows.clip_of(np.arange(clips.n_windows))
    dom, sec = torch.as_tensor(clips.clip_domain[clip]), torch.as_tensor(clips.clip_section[clip])
    assert (dom[a] == 0).all() and (dom[b] == 1).all() and (sec[a] == sec[b]).all() and (sec[a] == sec[idx]).all()


@pytest.mark.parametrize("stage", ["pretrain", "finetune", "baseline"])
def test_every_learned_stage_ends_with_precise_bn(tiny_synth, feature_cache, tmp_path, stage):
    """The saved encoder's BN statistics are those of the real training windows (here 64 windows:
    one batch, so the first BN's running mean is exactly its input's mean), not the training
    run's (last.pt, written before the re-estimation)."""
    from dgmix.models import build_baseline_encoder, build_encoder
    from dgmix.training.common import training_clips
    from dgmix.training.distributed import DistContext

    cfg = _tiny(epochs=1)
    cfg.finetune.epochs = cfg.baseline.epochs = 1
    out = tmp_path / stage
    if stage == "pretrain":
        pretrain(tiny_synth, "fan", cfg, out, feature_cache, progress=False)
    elif stage == "finetune":
        finetune(tiny_synth, "fan", cfg, out, feature_cache, init=None, progress=False)
    else:
        train_baseline(tiny_synth, "fan", cfg, out, feature_cache, progress=False)
    clips = training_clips(tiny_synth, "fan", cfg, feature_cache, DistContext(), progress=False)
    assert clips.n_windows <= 256
    saved = load_checkpoint(out / "encoder.pt")["encoder"]
    windows = clips.windows.batch(np.arange(clips.n_windows))
    if stage == "baseline":  # the official baseline's network: padding, conv, BN; Keras orientation, 3 copies
        enc = build_baseline_encoder(cfg.model, cfg.features)
        pad, conv, bn = enc.features[0][0], enc.features[0][1], enc.features[0][2]
        x, bn_name = pad(windows.transpose(2, 3).repeat(1, 3, 1, 1)), "features.0.2"
    else:
        enc = build_encoder(cfg.model, cfg.features)
        conv, bn, x, bn_name = enc.stages.conv3x3[0], enc.stages.conv3x3[1], windows, "stages.conv3x3.1"
    enc.load_state_dict(saved)
    with torch.no_grad():
        y = conv(x)
    torch.testing.assert_close(bn.running_mean, y.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(bn.running_var, y.var(dim=(0, 2, 3)), rtol=1e-3, atol=1e-3)
    trained = load_checkpoint(out / "last.pt")["model"]
    key = f"encoder.{bn_name}.running_mean"
    assert not torch.equal(trained[key], saved[f"{bn_name}.running_mean"])
    if stage != "pretrain":  # the classifier's model.pt carries the same encoder
        model = load_checkpoint(out / "model.pt")["model"]
        assert torch.equal(model[key], saved[f"{bn_name}.running_mean"])
