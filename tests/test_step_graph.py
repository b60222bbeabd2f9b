"""cuda_graphs: step (dgmix.training.step_graph): the whole training step in one CUDA graph.

On the CPU the capture-ready step (:func:`train_step` through :class:`StepGraph`, with the
device-resident data path and its device draws forced, the tensor learning rate and, for AdamW,
the capturable optimizer) is run eagerly and compared with the eager loop; the config field's
parsing is checked; the GPU tests capture and replay (skipped without CUDA).
"""

from __future__ import annotations

import importlib

import pytest
import torch
import yaml
from torch import nn

from dgmix.checkpoint import load_checkpoint
from dgmix.config import config_from_dict, load_config, resume_config, write_config
from dgmix.errors import InputError
from dgmix.optim import LARS, param_groups
from dgmix.training import device_data, step_graph
from dgmix.training.common import loop_settings, training_clips
from dgmix.training.distributed import DistContext
from dgmix.training.finetune import FinetuneTask
from dgmix.training.graphs import GraphedForward
from dgmix.training.loop import plan_steps, run_loop
from dgmix.training.pretrain import PretrainTask, build_optimizer
from dgmix.training.step_graph import StepGraph, use_lr_tensor

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs CUDA")


@pytest.fixture
def device_path(monkeypatch):
    """The CUDA path of the data and of the draws, on the CPU: windows gathered by index on the
    device, pairs / lambda / SpecAugment from the stage's own generator (dgmix.training.device_data)."""
    monkeypatch.setattr(device_data, "use_device_data", lambda device: True)
    monkeypatch.setattr(device_data, "draws_on_device", lambda device: True)


@pytest.fixture
def capturable_on_cpu(monkeypatch):
    """AdamW's capturable form on the CPU: torch refuses it there only by a device list (its
    arithmetic is plain tensor code), so the CPU runs the update a capture would record."""
    monkeypatch.setattr(importlib.import_module("torch.optim.adam"), "_get_capturable_supported_devices",
                        lambda supports_xla=True: ["cuda", "cpu"])
    monkeypatch.setattr(step_graph, "capturable_on", lambda device: True)


@pytest.fixture(scope="module")
def clips(tiny_synth, feature_cache):
    return training_clips(tiny_synth, "fan", load_config("tiny"), feature_cache, DistContext(), progress=False)


def _counting_train_step(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = step_graph.train_step

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(step_graph, "train_step", counted)
    return calls


def _stage(clips, stage: str, mode: str, tmp_path):
    """Train the tiny preset's stage for its 2 epochs of 4 steps (through an epoch boundary and its
    checkpoint) with ``cuda_graphs: mode``; returns the trained module's state and the run dir."""
    ctx = DistContext()
    if stage == "finetune":
        cfg = load_config("tiny", overrides={"finetune": {"cuda_graphs": mode}})
        torch.manual_seed(0)
        task = FinetuneTask(clips, cfg, ctx)
        f = cfg.finetune
        # as finetune() builds it, but with the step path's arithmetic (a 0-d lr tensor, the capturable
        # form), so that the eager loop and the step path differ only in how the step is run: see
        # test_capturable_adamw_with_a_tensor_lr_is_plain_adamw for that arithmetic against plain AdamW
        opt = torch.optim.AdamW(param_groups(task.module, f.weight_decay), lr=torch.tensor(f.lr),
                                weight_decay=f.weight_decay, capturable=True)
        lr_at, stage_cfg = None, f
    else:
        cfg = load_config("tiny", overrides={"pretrain": {"cuda_graphs": mode, "method": stage}})
        torch.manual_seed(0)
        task = PretrainTask(clips, cfg, ctx)
        stage_cfg = cfg.pretrain
        steps_per_epoch, _ = plan_steps(task.n_windows, loop_settings(stage_cfg, cfg, False, None, stage), ctx)
        opt, sched = build_optimizer(task.module, cfg, steps_per_epoch)  # LARS, warm-up + cosine lr
        lr_at = sched.lr_at
    assert task.device_generator is not None and task.resident is not None
    out = tmp_path / mode
    result = run_loop(task, task.module, opt, lr_at, loop_settings(stage_cfg, cfg, False, None, stage), out, ctx, {})
    assert result.steps == 8
    return {k: v.detach().clone() for k, v in task.module.state_dict().items()}, out


@pytest.mark.parametrize("stage", ["dgmix", "vicreg", "finetune"])
def test_the_step_path_trains_as_the_eager_loop(clips, stage, tmp_path, monkeypatch, device_path,
                                                capturable_on_cpu):
    """(a) 8 steps through run_loop with cuda_graphs none (the eager loop: task.step, zero_grad,
    backward, optimizer.step) and step (StepGraph -> train_step, the function a capture records)
    from one seed end with the same parameters and BN statistics.

    Tolerance: none (bitwise). Both runs make the same float32 operations in the same order on the
    CPU: the same draws from the same device generator, the same forward and backward, and the same
    update arithmetic (LARS computes p - m * lr alike for a number and a 0-d tensor lr; fine-tuning's
    AdamW is set up with the step path's tensor lr and capturable form in both runs). On this tiny
    network a one-ulp difference grows to percent-level gradients within one step (measured: a 3e-7
    relative perturbation of the weights changes the first gradient by 2 %), so any tolerance
    between differently rounded runs would be either loose or a tie; the capturable-vs-plain AdamW
    arithmetic is compared on a well-conditioned problem below.
    """
    calls = _counting_train_step(monkeypatch)
    eager, _ = _stage(clips, stage, "none", tmp_path)
    assert calls == []
    stepped, out = _stage(clips, stage, "step", tmp_path)
    assert len(calls) == 8  # every step went through the capture-ready function
    for name, ref in eager.items():
        torch.testing.assert_close(stepped[name], ref, rtol=0, atol=0, msg=name)
    # the checkpoint stores the lr as a number, as the eager loop does
    groups = load_checkpoint(out / "last.pt")["optimizer"]["param_groups"]
    assert all(isinstance(g["lr"], float) for g in groups)
    if stage == "finetune":
        assert all(g["capturable"] for g in groups)


class ToyTask:
    """A well-conditioned step with the parts of a mixup task that matter here: data resident on
    ``device``, anchors by index, a draw from the task's own device generator in every step (a
    per-sample target shift, reported as ``draw``)."""

    def __init__(self, device: str, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(64, 8, generator=g).to(device)
        self.y = (self.x @ torch.randn(8, 1, generator=g).to(device)).squeeze(1)
        torch.manual_seed(seed)
        self.module = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).to(device)
        self.device_generator = torch.Generator(device=device).manual_seed(seed + 1)
        self.n_windows, self.index_device = 64, torch.device(device)

    def step(self, model: nn.Module, idx: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        shift = torch.rand(idx.shape, generator=self.device_generator, device=idx.device)
        loss = (model(self.x[idx]).squeeze(1) - self.y[idx] - shift).pow(2).mean()
        return {"loss": loss, "draw": shift.mean()}


def _optimizer(kind: str, module: nn.Module, capturable: bool = False) -> torch.optim.Optimizer:
    if kind == "lars":
        return LARS(module.parameters(), lr=0.1, weight_decay=1e-4, momentum=0.9, eta=0.02)
    return torch.optim.AdamW(param_groups(module, 1e-2), lr=0.1, weight_decay=1e-2, capturable=capturable)


def _eager_steps(task: ToyTask, opt: torch.optim.Optimizer, lrs: list[float]) -> list[dict[str, float]]:
    """The eager loop's step with a number lr, set before each step."""
    out = []
    for i, lr in enumerate(lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        idx = torch.arange(16, device=task.index_device) + 16 * (i % 4)
        terms = task.step(task.module, idx, torch.Generator())
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        out.append({k: float(v.detach()) for k, v in terms.items()})
    return out


def _graph_steps(runner: StepGraph, task: ToyTask, lrs: list[float]) -> list[dict[str, float]]:
    out = []
    for i, lr in enumerate(lrs):
        idx = torch.arange(16, device=task.index_device) + 16 * (i % 4)
        out.append({k: float(v.detach()) for k, v in runner.step(idx, lr, torch.Generator()).items()})
    return out


#: a changing schedule, zeros included; AdamW's at a tenth (its steps are about lr per parameter)
LRS = [0.1, 0.0, 0.05, 0.2, 0.02, 0.0, 0.1, 0.07]
ADAMW_LRS = [lr / 10 for lr in LRS]
#: AdamW's capturable form (a tensor lr) against its plain form (a number lr): torch computes
#: lr / (1 - beta1^t) by a division for a tensor and by reciprocal-then-multiply for a number, one
#: float32 rounding apart (~1e-7 relative) per step, which Adam's normalised update m / sqrt(v) carries
#: into the parameters: at most 6e-7 after these 8 steps (measured), against steps of ~1e-2 per
#: parameter (a lost, repeated or mistimed lr shows as > 1e-3, checked below). So 1e-5.
ADAMW_TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.mark.parametrize("kind", ["lars", "adamw"])
def test_the_lr_tensor_is_read_at_every_step(kind, capturable_on_cpu):
    """(b) Changing the lr tensor between steps changes each update as an eager step with that lr
    would: the lr is an input of the step, not a constant of it. LARS: bitwise (the same operations
    for a number and a tensor lr). AdamW: :data:`ADAMW_TOL`, both sides in the capturable form (the
    form a capture records)."""
    lrs, tol = (LRS, {"rtol": 0, "atol": 0}) if kind == "lars" else (ADAMW_LRS, ADAMW_TOL)
    ref_task = ToyTask("cpu")
    ref = _eager_steps(ref_task, _optimizer(kind, ref_task.module, capturable=True), lrs)
    task = ToyTask("cpu")
    runner = StepGraph(task, task.module, _optimizer(kind, task.module), DistContext(), capture=False)
    got = _graph_steps(runner, task, lrs)
    assert runner.steps == len(lrs) and not runner.captured
    assert all(g["lr"] is runner.lr for g in runner.optimizer.param_groups)
    for name, p in ref_task.module.state_dict().items():
        torch.testing.assert_close(task.module.state_dict()[name], p, **tol, msg=name)
    assert [r["draw"] for r in got] == [r["draw"] for r in ref]  # the same draws, step by step
    # the same run at a constant lr ends elsewhere: the comparison above can fail
    other = ToyTask("cpu")
    const = StepGraph(other, other.module, _optimizer(kind, other.module), DistContext(), capture=False)
    _graph_steps(const, other, [lrs[0]] * len(lrs))
    gap = max(float((a - b).abs().max()) for a, b in zip(other.module.state_dict().values(),
                                                          task.module.state_dict().values()))
    assert gap > 1e-3


def test_capturable_adamw_with_a_tensor_lr_is_plain_adamw(capturable_on_cpu):
    """The update arithmetic of the step path's AdamW (capturable form, 0-d tensor lr) against plain
    AdamW with a number lr, as the eager loop runs fine-tuning, on the well-conditioned toy problem:
    equal within :data:`ADAMW_TOL`."""
    plain_task, task = ToyTask("cpu"), ToyTask("cpu")
    plain = _optimizer("adamw", plain_task.module)
    _eager_steps(plain_task, plain, ADAMW_LRS)
    runner = StepGraph(task, task.module, _optimizer("adamw", task.module), DistContext(), capture=False)
    _graph_steps(runner, task, ADAMW_LRS)
    assert all(g["capturable"] for g in runner.optimizer.param_groups)
    assert not any(g["capturable"] for g in plain.param_groups)
    for name, p in plain_task.module.state_dict().items():
        torch.testing.assert_close(task.module.state_dict()[name], p, **ADAMW_TOL, msg=name)


def test_refusals_name_the_problem():
    task = ToyTask("cpu")
    opt = _optimizer("lars", task.module)
    with pytest.raises(ValueError, match="DDP"):
        StepGraph(task, task.module, opt, DistContext(rank=0, world_size=2))
    with pytest.raises(ValueError, match="captures CUDA graphs"):
        StepGraph(task, task.module, opt, DistContext(), capture=True)
    task.device_generator = None
    with pytest.raises(ValueError, match="device-resident"):
        StepGraph(task, task.module, opt, DistContext(device=torch.device("cuda")), capture=True)
    with pytest.raises(TypeError, match="LARS, Adam and AdamW"):
        use_lr_tensor(torch.optim.SGD(task.module.parameters(), lr=0.1), torch.tensor(0.1), capturable=False)
    two_lrs = torch.optim.AdamW([{"params": [task.module[0].weight], "lr": 0.1},
                                 {"params": [task.module[0].bias], "lr": 0.2}])
    with pytest.raises(ValueError, match="one learning rate"):
        StepGraph(task, task.module, two_lrs, DistContext(), capture=False)
    with pytest.raises(ValueError, match="do not also wrap"):
        StepGraph(task, GraphedForward(task.module), opt, DistContext(), capture=False)
    fresh = ToyTask("cpu")
    runner = StepGraph(fresh, fresh.module, _optimizer("lars", fresh.module), DistContext(), capture=False)
    runner.step(torch.arange(16), 0.1, torch.Generator())
    with pytest.raises(RuntimeError, match="every batch shaped as the first"):
        runner.step(torch.arange(8), 0.1, torch.Generator())


# ---------------------------------------------------------------- (c) the config field


@pytest.mark.parametrize("section", ["pretrain", "finetune"])
def test_config_field_values_and_the_old_booleans(section, tmp_path):
    assert getattr(load_config("paper"), section).cuda_graphs == "none"
    for value in ("none", "forward", "step"):
        assert getattr(load_config("paper", overrides={section: {"cuda_graphs": value}}), section).cuda_graphs == value
    # config files and run directories of earlier versions said true / false
    for old, new in ((False, "none"), (True, "forward")):
        assert getattr(load_config("paper", overrides={section: {"cuda_graphs": old}}), section).cuda_graphs == new
        path = tmp_path / f"{section}_{old}.yaml"
        path.write_text(f"{section}:\n  cuda_graphs: {str(old).lower()}\n")
        assert getattr(load_config("cpu", path), section).cuda_graphs == new
        data = load_config("paper").to_dict()
        data[section]["cuda_graphs"] = old
        assert getattr(config_from_dict(data), section).cuda_graphs == new
    for bad in ("yes", "graph", 1, None, ["step"]):
        with pytest.raises(InputError, match=rf"{section}\.cuda_graphs must be one of 'none', 'forward', 'step'"):
            load_config("paper", overrides={section: {"cuda_graphs": bad}})
    cfg = load_config("paper", overrides={section: {"cuda_graphs": "step"}})
    written = yaml.safe_load(write_config(cfg, tmp_path / "run").read_text())
    assert written[section]["cuda_graphs"] == "step"


def test_resuming_a_run_written_with_the_old_boolean(tmp_path):
    """A run directory whose config.yaml says ``cuda_graphs: false`` resumes under today's
    ``none`` without a reported difference."""
    run = tmp_path / "run"
    write_config(load_config("cpu"), run)
    data = yaml.safe_load((run / "config.yaml").read_text())
    data["finetune"]["cuda_graphs"] = False
    (run / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    saved = resume_config(run, None, None, {"finetune": {"cuda_graphs": "none"}})
    assert saved.finetune.cuda_graphs == "none"
    with pytest.raises(InputError, match="finetune.cuda_graphs is 'none' in the run"):
        resume_config(run, None, None, {"finetune": {"cuda_graphs": "step"}})


# ---------------------------------------------------------------- (d) capture and replay, on a GPU


@needs_cuda
@pytest.mark.parametrize("kind", ["lars", "adamw"])
def test_replays_take_the_eager_steps_with_fresh_draws_and_the_lr_of_each_step(kind):
    """Warm-up steps, the capture (at step 4) and 8 replays against 12 eager CUDA steps from the same
    seed with the same changing lr: the same draws at every step (the registered generator gives
    fresh numbers to each replay) and the same parameters within float32 rounding of a
    well-conditioned problem (rtol 1e-4: the kernels a graph records are those of the eager step,
    but reductions may be ordered differently)."""
    lrs = (LRS if kind == "lars" else ADAMW_LRS) * 2
    lrs = lrs[:12]
    ref_task = ToyTask("cuda")
    ref = _eager_steps(ref_task, _optimizer(kind, ref_task.module, capturable=True), lrs)
    task = ToyTask("cuda")
    runner = StepGraph(task, task.module, _optimizer(kind, task.module), DistContext(device=torch.device("cuda")))
    got = _graph_steps(runner, task, lrs)
    assert runner.captured and runner.steps == len(lrs)
    draws = [r["draw"] for r in got]
    assert len(set(draws)) == len(draws)  # fresh numbers at every replay
    torch.testing.assert_close(torch.tensor(draws), torch.tensor([r["draw"] for r in ref]), rtol=1e-6, atol=0)
    torch.testing.assert_close(torch.tensor([r["loss"] for r in got]), torch.tensor([r["loss"] for r in ref]),
                               rtol=1e-4, atol=1e-6)
    for name, p in ref_task.module.state_dict().items():
        torch.testing.assert_close(task.module.state_dict()[name], p, rtol=1e-4, atol=1e-6, msg=name)


@needs_cuda
@pytest.mark.parametrize("stage", ["dgmix", "vicreg", "finetune"])
def test_the_real_steps_capture_and_replay_on_a_gpu(clips, stage, monkeypatch):
    """The tiny preset's steps, device-resident on CUDA, at their own lr: the warm-up steps and the
    first replay (step 4) give the loss terms of the eager steps, from the same parameters and
    draws (cuDNN deterministic; rtol 1e-3: the kernels a capture records may still differ from an
    eager call's, and this network amplifies rounding), and later replays keep training (finite
    losses, parameters moving)."""
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", True)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    ctx = DistContext(device=torch.device("cuda"))
    terms = {}
    for mode in ("eager", "graph"):
        torch.manual_seed(0)
        if stage == "finetune":
            cfg = load_config("tiny")
            task = FinetuneTask(clips, cfg, ctx)
            opt = torch.optim.AdamW(param_groups(task.module, 1e-4), lr=cfg.finetune.lr, weight_decay=1e-4)
        else:
            cfg = load_config("tiny", overrides={"pretrain": {"method": stage}})
            task = PretrainTask(clips, cfg, ctx)
            opt, _ = build_optimizer(task.module, cfg, steps_per_epoch=4)
        runner = StepGraph(task, task.module, opt, ctx, capture=mode == "graph")
        start = [p.detach().clone() for p in task.module.parameters()]
        out = []
        for i in range(6):
            idx = torch.arange(16, device="cuda") + 16 * (i % 4)
            out.append({k: float(v.detach()) for k, v in runner.step(idx, runner.base_lr, torch.Generator()).items()})
        assert runner.captured == (mode == "graph")
        assert all(torch.isfinite(torch.tensor(list(t.values()))).all() for t in out)
        assert any(not torch.equal(a, p) for a, p in zip(start, task.module.parameters()))
        terms[mode] = out
    for step in range(4):  # warm-up steps (eager) and the first replay
        for k, v in terms["eager"][step].items():
            assert terms["graph"][step][k] == pytest.approx(v, rel=1e-3, abs=1e-5), (step, k)
