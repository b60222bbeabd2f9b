"""The scoring graph of a detector bundle as one torch module, ready for ``torch.onnx.export``.

:class:`ScoreGraph` maps one clip's log-mel windows and its section index to the anomaly score,
computing what :meth:`DetectorBundle.score_features <dgmix.scoring.bundle.DetectorBundle.score_features>`
computes, in one graph:

* ``knn`` bundles with a :class:`~dgmix.scoring.knn.KNNScorer`: the (BatchNorm-folded) encoder on
  every window -> window pooling (:mod:`dgmix.scoring.pooling`: mean, max, gwrp, mean+max,
  mean+std) or window-level items -> with ``standardize``, every item standardised with its
  section's bank mean and std (``(x - mean) / std``, the std as stored by the scorer's fit, i.e.
  already floored at 1e-6) -> k-NN distance to the section's bank by matmul
  (``|q|² + |b|² - 2 q·b`` on bank-centred embeddings, as :func:`dgmix.scoring.distance.knn_distance`)
  -> mean of the k smallest -> with domain-aware banks, each bank's distance divided by its scale
  and the minimum taken -> window-level aggregation (mean, max, topk-mean).
* ``knn`` bundles with a :class:`~dgmix.scoring.gmm.GMMScorer`: the encoder -> window pooling ->
  negative log-likelihood under the section's Gaussian mixture (diagonal or full covariance, tied
  per-domain components included: they are ordinary components), as
  :func:`dgmix.scoring.gmm.gmm_log_likelihood`, in float64 like the torch scorer.
* ``logmel`` bundles: the same without an encoder; the "windows" are the clip's log-mel frames.
* ``classifier`` bundles (the official baseline): mean over windows of ``log((1 - p) / p)``, ``p``
  the softmax probability of the clip's section (:func:`dgmix.scoring.embed.classifier_scores`).

Banks are stored padded: ``(S, B, N, D)`` for ``S`` sections, ``B`` banks per section (1, or 2 with
domain-aware banks: source, target), ``N`` the largest bank. Padding rows get a distance of
``BIG`` and a weight of 0 in the k-mean; a missing bank (a section with no target clip) gets
``BIG`` added to its score so that the minimum over banks skips it. ``k`` is capped at each bank's
size, as the torch scorer does. Distances are computed in the bank's dtype (float32), as in torch.
The standardisation statistics are ``(S, D)`` (mean 0, std 1 for a section with no bank).

Mixtures are stored padded too: ``(S, K, D)`` means and ``(S, K, D)`` (diag) or ``(S, K, D, D)``
(full) precision Cholesky factors for ``K`` the most components of any section; a padding
component has mean 0, precision factor 1 (identity) and log-weight ``-BIG``, so that it adds
``exp(-1e30) = 0`` to the section's likelihood. The pooled vector is float32 (as the bundle pools
it); the likelihood is float64 (ONNX and onnxruntime's CPU kernels have float64 for every op used).

Data-dependent sizes (the number of windows; the ``topk_k`` and GWRP ranks) are computed from
tensor shapes inside the graph, never from Python numbers, so one graph serves every clip length.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from dgmix.scoring.embed import EPS
from dgmix.scoring.gmm import GMMScorer
from dgmix.scoring.knn import KNNScorer

#: Distance given to padding rows and missing banks (far above any real distance, finite in float32);
#: ``-BIG`` is the log-weight of a padding mixture component.
BIG = 1e30

__all__ = ["BIG", "BankDistance", "ClassifierGraph", "GmmGraph", "KnnGraph", "ScoreGraph"]


def _select(t: Tensor, section: Tensor) -> Tensor:
    """``t[section]`` as an ONNX Gather on a 0-d int64 index."""
    return torch.index_select(t, 0, section.reshape(1)).squeeze(0)


def _ranks(x: Tensor) -> Tensor:
    """0, 1, 2, ... along dim 0 of ``x`` (same shape and dtype); traced from the shape."""
    return torch.cumsum(torch.ones_like(x), dim=0) - 1


class BankDistance(nn.Module):
    """Per-section (and per-domain) k-NN distance of query items to a :class:`KNNScorer`'s bank."""

    def __init__(self, scorer: KNNScorer, n_sections: int) -> None:
        super().__init__()
        bank, secs, doms = scorer.bank.detach().cpu(), scorer.bank_sections.cpu(), scorer.bank_domains.cpu()
        n_banks = 2 if scorer.domain_aware else 1
        groups: dict[tuple[int, int], Tensor] = {}
        for s in range(n_sections):
            for b in range(n_banks):
                mask = secs == s
                if scorer.domain_aware:
                    mask = mask & (doms == b)
                if bool(mask.any()):
                    groups[(s, b)] = bank[mask]
        n_max = max((g.shape[0] for g in groups.values()), default=1)
        k_max = min(scorer.k, n_max)
        dim, dtype = bank.shape[1], bank.dtype
        banks = torch.zeros(n_sections, n_banks, n_max, dim, dtype=dtype)
        centers = torch.zeros(n_sections, n_banks, 1, dim, dtype=dtype)
        norms = torch.zeros(n_sections, n_banks, n_max, dtype=dtype)
        pad = torch.full((n_sections, n_banks, n_max), BIG, dtype=dtype)
        weights = torch.zeros(n_sections, n_banks, k_max, dtype=dtype)
        scales = torch.ones(n_sections, n_banks, dtype=dtype)
        absent = torch.full((n_sections, n_banks), BIG, dtype=dtype)
        for (s, b), entries in groups.items():
            n = entries.shape[0]
            center = entries.mean(dim=0, keepdim=True)  # as knn_distance: distances on centred rows
            centred = entries - center
            banks[s, b, :n] = centred
            centers[s, b] = center
            norms[s, b, :n] = (centred * centred).sum(dim=1)
            pad[s, b, :n] = 0.0
            weights[s, b, : min(scorer.k, n)] = 1.0 / min(scorer.k, n)
            absent[s, b] = 0.0
            if scorer.domain_aware:
                row = int(torch.nonzero(scorer.scale_sections.cpu() == s).reshape(-1)[0])
                scales[s, b] = scorer.scales[row, b].cpu()
        self.k_max = k_max
        self.standardize = scorer.standardize
        if scorer.standardize:
            std_mean = torch.zeros(n_sections, dim, dtype=scorer.std_mean.dtype)
            std_scale = torch.ones(n_sections, dim, dtype=scorer.std_scale.dtype)
            for row, s in enumerate(scorer.std_sections.cpu().tolist()):
                if s < n_sections:
                    std_mean[s] = scorer.std_mean[row].detach().cpu()
                    std_scale[s] = scorer.std_scale[row].detach().cpu()  # floored at 1e-6 by the fit
            self.register_buffer("std_mean", std_mean)
            self.register_buffer("std_scale", std_scale)
        self.register_buffer("banks", banks)
        self.register_buffer("centers", centers)
        self.register_buffer("norms", norms)
        self.register_buffer("pad", pad)
        self.register_buffer("weights", weights)
        self.register_buffer("scales", scales)
        self.register_buffer("absent", absent)

    def forward(self, items: Tensor, section: Tensor) -> Tensor:
        """Distance ``(M,)`` of every item ``(M, D)`` to its section's bank(s)."""
        bank = _select(self.banks, section)                       # (B, N, D)
        items = items.to(bank.dtype)
        if self.standardize:  # KNNScorer._standardized: the section's mean and (floored) std
            items = (items.to(self.std_mean.dtype) - _select(self.std_mean, section)) \
                / _select(self.std_scale, section)
            items = items.to(bank.dtype)
        q = items.unsqueeze(0) - _select(self.centers, section)  # (B, M, D)
        q2 = (q * q).sum(dim=2, keepdim=True)                     # (B, M, 1)
        d2 = q2 + _select(self.norms, section).unsqueeze(1) - 2.0 * torch.matmul(q, bank.transpose(1, 2))
        d2 = d2.clamp_min(0.0) + _select(self.pad, section).unsqueeze(1)
        nearest = torch.topk(d2, self.k_max, dim=2, largest=False).values   # (B, M, K)
        dist = (nearest.sqrt() * _select(self.weights, section).unsqueeze(1)).sum(dim=2)  # (B, M)
        dist = dist / _select(self.scales, section).unsqueeze(1) + _select(self.absent, section).unsqueeze(1)
        return dist.min(dim=0).values


def pool_windows(x: Tensor, method: str, gwrp_r: float) -> Tensor:
    """:func:`dgmix.scoring.pooling.pool` of ``(W, D)`` window embeddings, export-friendly."""
    if method == "mean":
        return x.mean(dim=0)
    if method == "max":
        return x.amax(dim=0)
    if method == "mean+max":
        return torch.cat([x.mean(dim=0), x.amax(dim=0)])
    if method == "mean+std":
        mean = x.mean(dim=0)
        return torch.cat([mean, ((x - mean) ** 2).mean(dim=0).sqrt()])
    if method == "gwrp":
        srt = torch.sort(x, dim=0, descending=True).values
        ranks = _ranks(srt[:, :1]).to(torch.float64)             # (W, 1)
        w = torch.pow(torch.full_like(ranks, float(gwrp_r)), ranks)  # r**i, 0**0 == 1
        w = (w / w.sum()).to(x.dtype)
        return (w * srt).sum(dim=0)
    raise ValueError(f"pooling {method!r} has no ONNX form")


def aggregate_windows(scores: Tensor, method: str, topk_k: int) -> Tensor:
    """:func:`dgmix.scoring.window_aggregation.aggregate` for one clip's window scores ``(W,)``."""
    if method == "mean":
        return scores.mean()
    if method == "max":
        return scores.max()
    if method == "topk-mean":
        srt = torch.sort(scores, descending=True).values
        keep = (_ranks(srt) < topk_k).to(srt.dtype)
        return (srt * keep).sum() / keep.sum()
    raise ValueError(f"window aggregation {method!r} has no ONNX form")


class KnnGraph(nn.Module):
    """Window embeddings (encoder outputs, or log-mel frames without an encoder) -> k-NN score."""

    def __init__(self, encoder: nn.Module | None, scorer: KNNScorer, n_sections: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.distance = BankDistance(scorer, n_sections)
        self.window_level = scorer.window_level
        self.pooling, self.gwrp_r = scorer.pooling, scorer.gwrp_r
        self.aggregation, self.topk_k = scorer.aggregation, scorer.topk_k

    def forward(self, windows: Tensor, section: Tensor) -> Tensor:
        emb = windows if self.encoder is None else self.encoder(windows).float()
        if self.window_level:
            score = aggregate_windows(self.distance(emb, section), self.aggregation, self.topk_k)
        else:
            score = self.distance(pool_windows(emb, self.pooling, self.gwrp_r).unsqueeze(0), section)[0]
        return score.to(torch.float64).reshape(1)


class GmmGraph(nn.Module):
    """Window embeddings (or log-mel frames) -> pooled vector -> NLL under the section's mixture
    (:class:`GMMScorer`, :func:`dgmix.scoring.gmm.gmm_log_likelihood`), in float64."""

    def __init__(self, encoder: nn.Module | None, scorer: GMMScorer, n_sections: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling, self.gwrp_r = scorer.pooling, scorer.gwrp_r
        means, prec, logw = (t.detach().cpu().double() for t in (scorer.means, scorer.prec_chol,
                                                                 scorer.log_weights))
        owner = scorer.comp_sections.cpu()
        self.full = prec.ndim == 3
        dim = means.shape[1]
        counts = [int((owner == s).sum()) for s in range(n_sections)]
        k_max = max(max(counts, default=1), 1)
        pad_means = torch.zeros(n_sections, k_max, dim, dtype=torch.float64)
        if self.full:
            pad_prec = torch.eye(dim, dtype=torch.float64).expand(n_sections, k_max, dim, dim).clone()
        else:
            pad_prec = torch.ones(n_sections, k_max, dim, dtype=torch.float64)
        pad_logw = torch.full((n_sections, k_max), -BIG, dtype=torch.float64)
        log_det = torch.zeros(n_sections, k_max, dtype=torch.float64)
        for s, n in enumerate(counts):
            if n == 0:
                continue
            c = owner == s
            pad_means[s, :n], pad_prec[s, :n], pad_logw[s, :n] = means[c], prec[c], logw[c]
            # as gmm_log_likelihood computes it: sum of the logs of the factor's diagonal
            diag = torch.diagonal(prec[c], dim1=1, dim2=2) if self.full else prec[c]
            log_det[s, :n] = torch.log(diag).sum(dim=1)
        self.register_buffer("means", pad_means)
        self.register_buffer("prec_chol", pad_prec)
        self.register_buffer("log_weights", pad_logw)
        self.register_buffer("log_det", log_det)
        self.log_norm = dim * math.log(2 * math.pi)

    def forward(self, windows: Tensor, section: Tensor) -> Tensor:
        emb = windows if self.encoder is None else self.encoder(windows).float()
        x = pool_windows(emb, self.pooling, self.gwrp_r).to(torch.float64)       # (D,)
        diff = x.unsqueeze(0) - _select(self.means, section)                     # (K, D)
        if self.full:
            y = torch.matmul(diff.unsqueeze(1), _select(self.prec_chol, section)).squeeze(1)  # (K, D)
        else:
            y = diff * _select(self.prec_chol, section)
        log_prob = -0.5 * (self.log_norm + (y * y).sum(dim=1)) + _select(self.log_det, section)
        v = log_prob + _select(self.log_weights, section)                        # (K,)
        # logsumexp as torch computes it; (1,)-shaped, not 0-d: the TorchScript exporter casts 0-d float64
        # intermediates to float32
        top = v.amax(dim=0, keepdim=True)
        return -(top + torch.log(torch.exp(v - top).sum(dim=0, keepdim=True)))


class ClassifierGraph(nn.Module):
    """The official baseline's score from window logits (SPEC §7)."""

    def __init__(self, encoder: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.encoder, self.classifier = encoder, classifier

    def forward(self, windows: Tensor, section: Tensor) -> Tensor:
        logits = self.classifier(self.encoder(windows)).float().to(torch.float64)
        p = torch.softmax(logits, dim=1)
        p = torch.index_select(p, 1, section.reshape(1)).squeeze(1).clamp(EPS, 1 - EPS)
        return torch.log((1 - p) / p).mean().reshape(1)


#: Any of the graphs; all take ``(windows, section)`` and return the score as a float64 ``(1,)`` tensor.
ScoreGraph = KnnGraph | GmmGraph | ClassifierGraph
