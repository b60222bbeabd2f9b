"""Loss terms (paper eqs. 1-5), VICReg and the fine-tuning loss, against NumPy references."""

from __future__ import annotations

import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from dgmix.losses import (
    DGMixLoss,
    MixupKLLoss,
    VICRegLoss,
    consistency_term,
    covariance_term,
    invariance_term,
    variance_term,
)

EPS = 1e-4


def ref_variance(z: np.ndarray) -> float:
    n, d = z.shape
    total = 0.0
    for j in range(d):
        col = z[:, j]
        var = sum((v - col.mean()) ** 2 for v in col) / (n - 1)
        total += max(0.0, 1.0 - math.sqrt(var + EPS))
    return total / d


def ref_covariance(z: np.ndarray) -> float:
    cov = np.cov(z, rowvar=False)  # N - 1 normalisation
    d = z.shape[1]
    return float(sum(cov[i, j] ** 2 for i in range(d) for j in range(d) if i != j) / d)


def ref_consistency_sum(z, zp, zm, lam) -> float:
    n = z.shape[0]
    return float(sum(np.sum((zm[i] - (lam[i] * z[i] + (1 - lam[i]) * zp[i])) ** 2)
                     for i in range(n)) / n)


def _batch(n=16, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64) * 0.7
    zp = torch.randn(n, d, generator=g, dtype=torch.float64) * 1.3 + 0.5
    zm = torch.randn(n, d, generator=g, dtype=torch.float64)
    lam = torch.rand(n, generator=g, dtype=torch.float64)
    return z, zp, zm, lam


def test_variance_and_covariance_terms() -> None:
    z, zp, _, _ = _batch()
    for t in (z, zp):
        assert variance_term(t).item() == pytest.approx(ref_variance(t.numpy()), rel=1e-10)
        assert variance_term(t).item() == pytest.approx(ref_variance(t.numpy()), rel=1e-10)
        assert covariance_term(t).item() == pytest.approx(ref_covariance(t.numpy()), rel=1e-10)
        assert covariance_term(t).item() == pytest.approx(ref_covariance(t.numpy()), rel=1e-10)
    # both regimes of the hinge are exercised: zp has std > 1 in every dimension
    assert variance_term(zp * 10).item() == 0.0


def test_invariance_and_consistency_terms() -> None:
    z, zp, zm, lam = _batch()
    a, b = z.numpy(), zp.numpy()
    ref_inv = sum((a[i, j] - b[i, j]) ** 2 for i in range(a.shape[0]) for j in range(a.shape[1]))
    ref_inv /= a.size
    assert invariance_term(z, zp).item() == pytest.approx(ref_inv, rel=1e-10)
    assert invariance_term(z, zp).item() == pytest.approx(ref_inv, rel=1e-10)
    ref_sum = ref_consistency_sum(z.numpy(), zp.numpy(), zm.numpy(), lam.numpy())
    d = z.shape[1]
    # eq. 1 as printed (summed over dimensions), averaged over the dimensions too
    assert consistency_term(z, zp, zm, lam).item() == pytest.approx(ref_sum / d, rel=1e-10)
    assert consistency_term(z, zp, zm, lam).item() == pytest.approx(ref_sum / d, rel=1e-10)
    # scalar lambda == a vector of the same value; (N, 1) accepted
    s_scalar = consistency_term(z, zp, zm, 0.3)
    s_vec = consistency_term(z, zp, zm, torch.full((16,), 0.3, dtype=torch.float64))
    s_col = consistency_term(z, zp, zm, torch.full((16, 1), 0.3, dtype=torch.float64))
    torch.testing.assert_close(s_scalar, s_vec)
    torch.testing.assert_close(s_col, s_vec)
    # a perfectly linear embedding has zero consistency loss
    zl = lam[:, None] * z + (1 - lam[:, None]) * zp
    assert consistency_term(z, zp, zl, lam).item() == pytest.approx(0.0, abs=1e-24)
    with pytest.raises(ValueError, match="lam"):
        consistency_term(z, zp, zm, torch.ones(5))
    with pytest.raises(ValueError, match="same shape"):
        consistency_term(z, zp[:, :4], zm, lam)


def test_dgmix_loss_eq5() -> None:
    z, zp, zm, lam = _batch(n=12, d=6, seed=3)
    out = DGMixLoss()(z, zp, zm, lam)
    assert set(out) == {"loss", "consistency", "variance", "covariance"}
    zn, zpn = z.numpy(), zp.numpy()
    s = ref_consistency_sum(zn, zpn, zm.numpy(), lam.numpy()) / 6
    v = ref_variance(zn) + ref_variance(zpn)
    c = ref_covariance(zn) + ref_covariance(zpn)
    assert out["consistency"].item() == pytest.approx(s, rel=1e-10)
    assert out["variance"].item() == pytest.approx(v, rel=1e-10)
    assert out["covariance"].item() == pytest.approx(c, rel=1e-10)
    assert out["loss"].item() == pytest.approx(25 * s + 25 * v + 1 * c, rel=1e-10)
    other = DGMixLoss(gamma=2.0, mu=3.0, nu=5.0)(z, zp, zm, lam)
    assert other["loss"].item() == pytest.approx(2 * s + 3 * v + 5 * c, rel=1e-10)


def test_vicreg_loss() -> None:
    z, zp, _, _ = _batch(n=10, d=5, seed=4)
    zn, zpn = z.numpy(), zp.numpy()
    inv = float(np.mean((zn - zpn) ** 2))
    v = ref_variance(zn) + ref_variance(zpn)
    c = ref_covariance(zn) + ref_covariance(zpn)
    out = VICRegLoss()(z, zp)
    assert set(out) == {"loss", "invariance", "variance", "covariance"}
    assert out["invariance"].item() == pytest.approx(inv, rel=1e-10)
    assert out["loss"].item() == pytest.approx(25 * inv + 25 * v + c, rel=1e-10)


def test_batch_of_one_is_rejected() -> None:
    z = torch.randn(1, 8)
    for call in (lambda: variance_term(z), lambda: covariance_term(z),
                 lambda: DGMixLoss()(z, z, z, torch.ones(1)), lambda: VICRegLoss()(z, z)):
        with pytest.raises(ValueError, match="needs at least 2 samples"):
            call()
    with pytest.raises(ValueError, match="2-D"):
        variance_term(torch.randn(4))


def test_constant_embeddings_give_full_variance_penalty() -> None:
    z64 = torch.full((32, 64), 3.0, dtype=torch.float64)
    assert variance_term(z64).item() == pytest.approx(1 - math.sqrt(EPS), rel=1e-14)
    z = torch.full((32, 64), 3.0)  # float32: exact up to float32 rounding
    assert variance_term(z).item() == pytest.approx(1 - math.sqrt(EPS), abs=1e-6)
    assert covariance_term(z).item() == 0.0
    out = DGMixLoss()(z, z, z, torch.full((32,), 0.5))
    assert out["variance"].item() == pytest.approx(2 * (1 - math.sqrt(EPS)), abs=1e-6)


def test_gradients_flow_and_low_precision() -> None:
    z, zp, zm, lam = (t.float() for t in _batch())
    z, zp, zm = (t.clone().requires_grad_(True) for t in (z, zp, zm))
    DGMixLoss()(z, zp, zm, lam)["loss"].backward()
    for t in (z, zp, zm):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    za, zb = (torch.randn(8, 4, requires_grad=True) for _ in range(2))
    VICRegLoss()(za, zb)["loss"].backward()
    assert za.grad.abs().sum() > 0 and zb.grad.abs().sum() > 0
    # bfloat16 embeddings are evaluated in float32
    zb16 = torch.randn(8, 4).bfloat16()
    assert variance_term(zb16).dtype == torch.float32
    torch.testing.assert_close(covariance_term(zb16), covariance_term(zb16.float()))


def ref_kl(target: np.ndarray, logits: np.ndarray) -> float:
    total = 0.0
    for t_row, l_row in zip(target, logits):
        p = np.exp(l_row - l_row.max())
        p /= p.sum()
        total += sum(t * math.log(t / q) for t, q in zip(t_row, p) if t > 0)
    return total / target.shape[0]


def test_mixup_kl_loss() -> None:
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(6, 4, generator=g, dtype=torch.float64)
    lam = torch.rand(6, generator=g, dtype=torch.float64)
    a, b = torch.tensor([0, 1, 2, 3, 0, 2]), torch.tensor([1, 1, 3, 0, 2, 2])
    target = lam[:, None] * torch.eye(4, dtype=torch.float64)[a] + \
        (1 - lam[:, None]) * torch.eye(4, dtype=torch.float64)[b]  # has zeros
    y, yp, ym, _ = _batch(n=6, d=5, seed=6)
    out = MixupKLLoss(gamma=2.0)(logits, target, y, yp, ym, lam)
    assert set(out) == {"loss", "kl", "consistency"}
    kl = ref_kl(target.numpy(), logits.numpy())
    s = ref_consistency_sum(y.numpy(), yp.numpy(), ym.numpy(), lam.numpy()) / 5
    assert out["kl"].item() == pytest.approx(kl, rel=1e-6)
    assert out["consistency"].item() == pytest.approx(s, rel=1e-10)
    assert out["loss"].item() == pytest.approx(kl + 2.0 * s, rel=1e-6)
    # one-hot target: KL equals cross-entropy
    onehot = torch.eye(4, dtype=torch.float64)[a]
    ce = torch.nn.functional.cross_entropy(logits, a).item()
    assert MixupKLLoss()(logits, onehot, y, yp, ym, 1.0)["kl"].item() == pytest.approx(ce, rel=1e-6)
    logits_g = logits.clone().requires_grad_(True)
    ym_g = ym.clone().requires_grad_(True)
    MixupKLLoss()(logits_g, target, y, yp, ym_g, lam)["loss"].backward()
    assert logits_g.grad.abs().sum() > 0 and ym_g.grad.abs().sum() > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank: int, world: int, port: int, queue) -> None:
    import torch.distributed as dist

    from dgmix.training.distributed import gather_no_grad, gather_with_grad

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        z, zp, zm, lam = _batch(n=8, d=4, seed=7)
        w = torch.ones(4, dtype=torch.float64, requires_grad=True)  # a shared "parameter"
        sl = slice(rank * 4, rank * 4 + 4)
        z_all, zp_all, zm_all = (gather_with_grad(t[sl] * w) for t in (z, zp, zm))
        out = DGMixLoss()(z_all, zp_all, zm_all, gather_no_grad(lam[sl]))
        out["loss"].backward()
        grad = w.grad.clone()
        dist.all_reduce(grad)  # what DDP does, before dividing by the world size
        queue.put((rank, out["loss"].item(), (grad / world).tolist()))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_gather_gives_global_batch_loss() -> None:
    """With 2 processes of 4 samples each, the loss on embeddings gathered with gradients
    (dgmix.training.distributed.gather_with_grad, as the training stages do) reproduces the
    8-sample loss and its gradient (after DDP-style averaging)."""
    z, zp, zm, lam = _batch(n=8, d=4, seed=7)
    w = torch.ones(4, dtype=torch.float64, requires_grad=True)
    ref = DGMixLoss()(z * w, zp * w, zm * w, lam)["loss"]
    ref.backward()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_gather_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for _rank, loss, grad in results:
        assert loss == pytest.approx(ref.item(), rel=1e-10)
        np.testing.assert_allclose(grad, w.grad.numpy(), rtol=1e-9)
