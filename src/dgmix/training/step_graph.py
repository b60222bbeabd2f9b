"""The whole training step in one CUDA graph (``pretrain.cuda_graphs`` / ``finetune.cuda_graphs: step``).

Why: the paper's fine-tuning step (§3.4: AdamW, batch 64) and, at batch 1024, much of its
pre-training step (§3.3: LARS, warm-up + cosine schedule) are bound by launching kernels from
Python, not by the GPU (BENCHMARKS.md §2.2). :mod:`dgmix.training.graphs` (``forward``) graphs the
model's forward and backward only; the draws of pairs and lambda, the loss and the optimizer update
still launch one kernel at a time. Here :func:`train_step` (the draws of pairs and lambda or of
SpecAugment, the forward of every view, the loss, the backward and the optimizer update) is
captured once in a :class:`torch.cuda.CUDAGraph` and replayed at every later step.

What makes the step capturable, and what keeps a replay equal to an eager step:

* **data and draws on the device**: the windows are device-resident and every draw comes from the
  stage's own device generator (:class:`~dgmix.training.device_data.StepData`: pairs by
  :meth:`~dgmix.augment.PairSampler.draw_static`, lambda by
  :func:`~dgmix.training.device_data.beta_on_device`, SpecAugment on the device); nothing in the
  step reads a tensor value on the host. That generator is registered with the graph
  (:meth:`torch.cuda.CUDAGraph.register_generator_state`), so every replay draws fresh numbers and
  the generator continues from there after it, as in eager mode;
* **static inputs**: each step's anchor indices (a slice of the epoch's order from the loop's
  ``DistributedSampler``) are copied into one static index tensor before the replay;
* **the learning rate is an input, not a constant**: one 0-d device tensor that every param group
  reads, filled (``fill_``) with the schedule's value before each step. AdamW runs with
  ``capturable=True`` (its step counts and bias corrections stay on the device); LARS
  (:class:`dgmix.optim.LARS`) reads no value on the host and takes its lr from that tensor;
* **the warm-up counts**: before the capture, :data:`WARMUP_STEPS` steps run eagerly on a side
  stream (what the capture needs: lazily created optimizer state, cuDNN and allocator warm-up).
  They are real training steps, each on its own batch with its own lr, so the run takes the same
  steps as the eager loop; the capture happens lazily, at the first step after them, on that
  step's batch, and is then replayed to perform that step (capturing runs nothing);
* **autocast** (``pretrain.amp``) runs with ``cache_enabled=False``
  (:meth:`dgmix.training.pretrain.PretrainTask.forward_views`).

One implementation: the function a capture records, :func:`train_step`, is the one that runs
eagerly for the warm-up steps, on a device without CUDA graphs, and in the parity test. On a CPU
``step`` falls back to running it eagerly with the same tensor lr (documented fallback, no error):
the same steps as ``none`` up to float rounding (LARS: bitwise; AdamW with a tensor lr rounds its
step size in another order). ``tests/test_step_graph.py`` checks on the CPU, with the device data
path forced, that it trains as the eager loop (``none``: ``dgmix.training.loop.run_loop``'s own
step). A non-finite loss is detected after the step, as the loop reads the loss after the replay
(the eager loop checks it before the update); either way training stops and the last checkpoint
is the one before it.

Not for DDP (gradient all-reduce hooks are not captured): refused with a ValueError, as for
``forward``. Every step must have the shape of the first (the loop drops the ragged last batch).
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

from dgmix.optim import LARS
from dgmix.training.distributed import DistContext
from dgmix.training.graphs import GraphedForward

__all__ = ["WARMUP_STEPS", "StepGraph", "capturable_on", "plain_lr_state", "train_step", "use_lr_tensor"]

#: Eager steps on a side stream before the capture (PyTorch's whole-network example uses 3); at
#: least one is needed, so that the optimizer state (LARS momentum, AdamW moments) exists before
#: the capture, and is updated, not re-created, by every replay.
WARMUP_STEPS = 3


class _StepTask(Protocol):
    """What :func:`train_step` needs of a task (:class:`dgmix.training.loop.Task`)."""

    def step(self, model: nn.Module, idx: Tensor, generator: torch.Generator) -> dict[str, Tensor]: ...


def train_step(task: _StepTask, model: nn.Module, optimizer: torch.optim.Optimizer, idx: Tensor,
               generator: torch.Generator) -> dict[str, Tensor]:
    """One training step: the task's draws, forward and loss terms for anchors ``idx``, then the
    backward and the optimizer update. Returns the loss terms.

    The gradients are set to None first, so the backward allocates them: inside a capture they then
    live in the graph's memory and every replay overwrites them (no accumulation across steps).
    """
    optimizer.zero_grad(set_to_none=True)
    terms = task.step(model, idx, generator)
    terms["loss"].backward()
    optimizer.step()
    return terms


def capturable_on(device: torch.device) -> bool:
    """Whether AdamW runs with ``capturable=True`` for a stage on ``device``: on CUDA (torch refuses
    it on a CPU; the parity test forces it there)."""
    return torch.device(device).type == "cuda"


def use_lr_tensor(optimizer: torch.optim.Optimizer, lr: Tensor, capturable: bool) -> None:
    """Make every param group of ``optimizer`` read its learning rate from the 0-d tensor ``lr``.

    LARS takes a tensor lr as it is. Adam / AdamW get ``capturable`` (required for a capture; torch
    allows a tensor lr with it, or without it on the single-tensor path a CPU uses); with it, step
    counts already in the state (a resumed run) move to the parameters' device, where the
    capturable update expects them. Any other optimizer is refused: its update may not be
    graph-safe.
    """
    if not isinstance(optimizer, LARS | torch.optim.Adam):
        raise TypeError(f"cuda_graphs: step supports LARS, Adam and AdamW, not {type(optimizer).__name__}")
    for group in optimizer.param_groups:
        group["lr"] = lr
        if isinstance(optimizer, torch.optim.Adam):
            group["capturable"] = capturable
    if capturable and isinstance(optimizer, torch.optim.Adam):
        for p, state in optimizer.state.items():
            if torch.is_tensor(state.get("step")):
                state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


def plain_lr_state(state: dict[str, Any]) -> dict[str, Any]:
    """An optimizer ``state_dict()`` with tensor learning rates as numbers (as the eager loop
    saves them), for checkpoints; ``state`` is a fresh dict from ``state_dict()``, changed in place."""
    for group in state["param_groups"]:
        if torch.is_tensor(group["lr"]):
            group["lr"] = float(group["lr"])
    return state


def _common_lr(optimizer: torch.optim.Optimizer) -> float:
    values = {float(g["lr"]) for g in optimizer.param_groups}
    if len(values) != 1:
        raise ValueError(f"cuda_graphs: step needs one learning rate for every param group, got {sorted(values)}")
    return values.pop()


class StepGraph:
    """:func:`train_step` for ``task``, captured in a CUDA graph on first use and replayed.

    Args:
        task: a training task whose data and draws live on the device (``task.device_generator``,
            :class:`dgmix.training.pretrain.MixupTask`) when ``capture``.
        model: what the task calls (the unwrapped module: DDP is refused).
        optimizer: LARS, Adam or AdamW; its param groups' lr is replaced by :attr:`lr`.
        ctx: the stage's device and process group.
        capture: capture and replay (default: on CUDA); False runs :func:`train_step` eagerly with
            the same tensor lr (the CPU fallback and the parity test).
        capturable: AdamW's ``capturable`` (default :func:`capturable_on` the device).
        warmup_steps: eager steps on a side stream before the capture (at least 1).

    :meth:`step` is called once per training step with that step's anchor indices and lr.
    """

    def __init__(self, task: Any, model: nn.Module, optimizer: torch.optim.Optimizer, ctx: DistContext,
                 capture: bool | None = None, capturable: bool | None = None,
                 warmup_steps: int = WARMUP_STEPS) -> None:
        if ctx.is_distributed:
            raise ValueError("cuda_graphs: step cannot be combined with DDP (torchrun); set it to none")
        if isinstance(model, GraphedForward):
            raise ValueError("cuda_graphs: step captures the whole step; do not also wrap the model (forward)")
        device = torch.device(ctx.device)
        self.capture = device.type == "cuda" if capture is None else bool(capture)
        if self.capture and device.type != "cuda":
            raise ValueError(f"cuda_graphs: step captures CUDA graphs; the stage trains on {device}")
        self.generator: torch.Generator | None = getattr(task, "device_generator", None)
        if self.capture and self.generator is None:
            raise ValueError("cuda_graphs: step needs the device-resident data path and its device generator "
                             "(dgmix.training.device_data)")
        if warmup_steps < 1:
            raise ValueError(f"cuda_graphs: step needs at least one warm-up step before the capture, "
                             f"got {warmup_steps}")
        self.task, self.model, self.optimizer = task, model, optimizer
        self.warmup_steps = int(warmup_steps)
        #: the optimizer's lr when the graph was set up: the lr of a stage without a schedule
        self.base_lr = _common_lr(optimizer)
        #: the learning rate every param group reads, filled before each step (the parameters' dtype)
        dtype = optimizer.param_groups[0]["params"][0].dtype
        self.lr = torch.tensor(self.base_lr, dtype=dtype, device=device)
        use_lr_tensor(optimizer, self.lr, capturable_on(device) if capturable is None else capturable)
        self.steps = 0  # steps taken (warm-up steps included)
        self.graph: torch.cuda.CUDAGraph | None = None
        self._idx: Tensor | None = None  # the static anchor indices the graph reads
        self._terms: dict[str, Tensor] | None = None  # the graph's outputs, rewritten by each replay
        self._stream = torch.cuda.Stream(device) if self.capture else None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def step(self, idx: Tensor, lr: float, generator: torch.Generator) -> dict[str, Tensor]:
        """One training step on anchors ``idx`` (on the task's index device) at learning rate ``lr``;
        returns its loss terms (with a capture: the graph's static outputs, valid until the next
        step). ``generator`` is the loop's: the eager path passes it to the task (whose device path
        draws from its own generator); the captured path passes the registered device generator."""
        self.lr.fill_(lr)
        if self._idx is None:
            self._idx = torch.empty_like(idx)
        elif idx.shape != self._idx.shape or idx.device != self._idx.device:
            raise RuntimeError(f"cuda_graphs: step needs every batch shaped as the first, {tuple(self._idx.shape)} "
                               f"on {self._idx.device}; got {tuple(idx.shape)} on {idx.device}")
        self._idx.copy_(idx)
        self.steps += 1
        if not self.capture:
            return train_step(self.task, self.model, self.optimizer, self._idx, generator)
        if self.steps <= self.warmup_steps:
            return self._side_stream_step()
        if self.graph is None:
            self._capture()
        self.graph.replay()
        return self._terms

    def _side_stream_step(self) -> dict[str, Tensor]:
        """An eager warm-up step on the side stream (as torch requires before a capture)."""
        stream = self._stream
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            terms = train_step(self.task, self.model, self.optimizer, self._idx, self.generator)
        torch.cuda.current_stream().wait_stream(stream)
        return terms

    def _capture(self) -> None:
        """Record :func:`train_step` on the static inputs (capturing runs nothing: the caller replays)."""
        graph = torch.cuda.CUDAGraph()
        graph.register_generator_state(self.generator)  # fresh draws at every replay
        self.optimizer.zero_grad(set_to_none=True)  # the gradients are allocated in the graph's pool
        with torch.cuda.graph(graph, stream=self._stream):
            self._terms = train_step(self.task, self.model, self.optimizer, self._idx, self.generator)
        self.graph = graph
