"""DDP on CPU with two gloo processes: identical weights across ranks, and the global-batch loss.

(a) After a few DG-Mix steps under DistributedDataParallel, both ranks hold identical weights.
(b) Rank 0's loss, with embeddings gathered with gradients and batch norm synchronised, equals the
    single-process loss on the concatenated batch (within 1e-5), and so do the gradients.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from dgmix.config import load_config
from dgmix.training.distributed import DistContext, shutdown


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _init(rank: int, world: int, port: int) -> DistContext:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from dgmix.training.distributed import init_from_env

    return init_from_env("cpu")


def _cfg():
    cfg = load_config("tiny")
    cfg.pretrain.batch_size = 8
    cfg.pretrain.warmup_epochs = 0
    cfg.pretrain.epochs = 1
    return cfg


def _train_worker(rank: int, world: int, port: int, data: str, cache: str, out: str) -> None:
    ctx = _init(rank, world, port)
    try:
        from dgmix.training.common import training_clips, wrap_model
        from dgmix.training.loop import LoopSettings, plan_steps, run_loop
        from dgmix.training.pretrain import PretrainTask, build_optimizer

        cfg = _cfg()
        torch.manual_seed(cfg.seed)
        clips = training_clips(Path(data), "fan", cfg, Path(cache), ctx, progress=False)
        task = PretrainTask(clips, cfg, ctx)
        task.module, model = wrap_model(task.module, ctx)
        settings = LoopSettings(epochs=1, batch_size=8, windows_per_epoch=32, seed=0, progress=False)
        steps, _ = plan_steps(task.n_windows, settings, ctx)
        opt, sched = build_optimizer(task.module, cfg, steps)
        run_loop(task, model, opt, sched.lr_at, settings, Path(out) / "run", ctx, {})
        torch.save(task.module.state_dict(), Path(out) / f"rank{rank}.pt")
    finally:
        shutdown()


def _loss_worker(rank: int, world: int, port: int, inputs: str, out: str) -> None:
    ctx = _init(rank, world, port)
    try:
        from dgmix.training.common import wrap_model
        from dgmix.training.pretrain import PretrainTask

        data = torch.load(inputs, weights_only=True)
        task = PretrainTask(_FakeClips(), _cfg(), ctx)
        task.module.double()
        task.module.load_state_dict(data["state"])
        task.module, model = wrap_model(task.module, ctx)
        n = data["x"].shape[0] // world
        sl = slice(rank * n, (rank + 1) * n)
        terms = task.dgmix_terms(model, data["x"][sl], data["x2"][sl], data["lam"][sl])
        terms["loss"].backward()
        grads = {k: p.grad.clone() for k, p in task.module.named_parameters()}
        torch.save({"terms": {k: v.detach() for k, v in terms.items()}, "grads": grads},
                   Path(out) / f"loss{rank}.pt")
    finally:
        shutdown()


class _FakeClips:
    """Just enough of a ClipSet for PretrainTask's constructor."""

    n_windows = 100


@pytest.mark.slow
def test_ddp_ranks_hold_identical_weights(tiny_synth, feature_cache, tmp_path):
    port = _free_port()
    mp.spawn(_train_worker, args=(2, port, str(tiny_synth), str(feature_cache), str(tmp_path)),
             nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert (tmp_path / "run" / "last.pt").is_file()


@pytest.mark.slow
def test_ddp_loss_equals_single_process_global_batch(tmp_path):
    from dgmix.training.pretrain import PretrainTask

    torch.manual_seed(0)
    ctx = DistContext()
    task = PretrainTask(_FakeClips(), _cfg(), ctx)
    # float64 so that the comparison tests the arithmetic of the global batch, not float32
    # rounding (which differs between batch sizes of 4 and 8 by ~1e-6 relative).
    task.module.double()
    x = torch.randn(8, 1, 128, 64, dtype=torch.float64)
    x2 = torch.randn(8, 1, 128, 64, dtype=torch.float64)
    lam = torch.distributions.Beta(0.5, 0.5).sample((8,)).double()
    state = {k: v.clone() for k, v in task.module.state_dict().items()}
    torch.save({"x": x, "x2": x2, "lam": lam, "state": state}, tmp_path / "inputs.pt")
    single = task.dgmix_terms(task.module, x, x2, lam)
    single["loss"].backward()
    single_grads = {k: p.grad for k, p in task.module.named_parameters()}

    port = _free_port()
    mp.spawn(_loss_worker, args=(2, port, str(tmp_path / "inputs.pt"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"loss{rank}.pt", weights_only=True)
        for key in ("loss", "consistency", "variance", "covariance"):
            assert got["terms"][key].item() == pytest.approx(single[key].item(), abs=1e-5), (rank, key)
    # DDP averages the per-rank gradients: that average is the single-process gradient.
    g0 = torch.load(tmp_path / "loss0.pt", weights_only=True)["grads"]
    g1 = torch.load(tmp_path / "loss1.pt", weights_only=True)["grads"]
    for k, ref in single_grads.items():
        torch.testing.assert_close(g0[k], g1[k])
        torch.testing.assert_close(g0[k], ref, atol=1e-8, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not on PATH")
def test_torchrun_cli(tiny_synth, feature_cache, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).with_name("torchrun"))
    out = tmp_path / "run"
    cmd = [torchrun, "--nproc_per_node=2", "--master_port", str(_free_port()), "-m", "dgmix", "pretrain",
           "--data", str(tiny_synth), "--machine", "fan", "--preset", "tiny", "--out", str(out),
           "--cache", str(feature_cache), "--no-progress", "--stop-after-epoch", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "last.pt").is_file() and (out / "encoder.pt").is_file()
    assert "pretrain dgmix fan" in proc.stdout
