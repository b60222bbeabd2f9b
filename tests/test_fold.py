"""BatchNorm folding for inference: the folded encoder equals the plain one in eval mode."""

from __future__ import annotations

import torch
from torch import nn

from dgmix.config import ModelConfig
from dgmix.features import FeatureParams
from dgmix.models import build_encoder
from dgmix.models.fold import fold_batchnorm


def _trained_like(model: nn.Module) -> nn.Module:
    """Give every BN non-trivial statistics and affine parameters, as training would."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g))
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model.eval()


def test_folded_encoder_equals_the_plain_encoder():
    torch.manual_seed(0)
    for model_cfg in (ModelConfig(), ModelConfig(width_mult=1.0, embed_dim=64)):
        enc = _trained_like(build_encoder(model_cfg, FeatureParams()))
        folded = fold_batchnorm(enc)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        assert any(isinstance(m, nn.BatchNorm2d) for m in enc.modules())  # the original is untouched
        x = torch.randn(8, 1, 128, 64) * 5 - 30
        with torch.inference_mode():
            ref, got = enc(x), folded(x)
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))
        got_cl = folded.to(memory_format=torch.channels_last)(x.contiguous(memory_format=torch.channels_last))
        torch.testing.assert_close(got_cl, ref, rtol=1e-4, atol=1e-4 * float(ref.abs().max()))


def test_fold_handles_a_conv_with_bias():
    conv, bn = nn.Conv2d(3, 4, 3, padding=1, bias=True), nn.BatchNorm2d(4)
    seq = _trained_like(nn.Sequential(conv, bn, nn.ReLU()))
    x = torch.randn(2, 3, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(fold_batchnorm(seq)(x), seq(x), rtol=1e-5, atol=1e-5)


def test_the_detector_scores_with_the_folded_encoder_and_loads_it_back(tmp_path):
    import numpy as np

    from dgmix.scoring.backends import fit_backend
    from dgmix.scoring.detector import Detector, DetectorInfo, inference_encoder

    torch.manual_seed(0)
    enc = _trained_like(build_encoder(ModelConfig(), FeatureParams()))
    rng = np.random.default_rng(0)
    feats = [(rng.standard_normal((128, 100)) * 5 - 30).astype(np.float32) for _ in range(3)]
    det = Detector(DetectorInfo("encoder", "fan", "dgmix", ["00"], FeatureParams()), inference_encoder(enc))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in det.encoder.modules())  # folded
    plain = enc.eval()
    with torch.no_grad():
        for f in feats:  # the folded copy computes the plain encoder's function (float rounding)
            windows = det.windows(torch.from_numpy(f))
            ref = plain(windows)
            torch.testing.assert_close(det.window_outputs(torch.from_numpy(f)), ref, rtol=1e-4,
                                       atol=1e-4 * float(ref.abs().max()))
    det.backend = fit_backend("1nn", False, det.clip_vectors(feats), np.zeros(3, dtype=np.int64),
                              np.zeros(3, dtype=np.int64), 1)
    loaded = Detector.load(det.save(tmp_path / "d.pt"))
    assert loaded.score_features(feats, ["00"] * 3).tolist() == det.score_features(feats, ["00"] * 3).tolist()
