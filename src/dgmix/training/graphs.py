"""CUDA graphs for a training stage's forward and backward pass (``cuda_graphs: forward``).

Fine-tuning (paper §3.4) runs at batch 64: 1,500 steps per epoch of a DCASE-size machine type,
each step three MobileNetV2 passes and their backward, about 3,000 small kernels. On an H100 such
a step measured 51 ms, bound by launching kernels from Python, not by the GPU
(``benchmarks/bench_gpu.py``, BENCHMARKS.md §2.2). :class:`GraphedForward` records the wrapped
module's forward and backward once as CUDA graphs (:func:`torch.cuda.make_graphed_callables`)
and replays them on every later step, so one launch replaces thousands.

What stays the same: the parameters, the optimizer, the loss and the draws of pairs and lambda
(eager, outside the graphs); BN running statistics are updated inside the graph exactly as in
eager mode. The capture's warm-up passes (on the first batch) would update the BN running
statistics four extra times, so they are restored after the capture. Only training-mode calls
with grad enabled on CUDA, with the shapes of the first call, are graphed (the loop drops the
ragged last batch, so every step has that shape); anything else runs the module eagerly.
Not for DDP (its gradient hooks cannot be captured): :func:`maybe_graph` refuses it.
``cuda_graphs: step`` captures the whole step instead, draws and optimizer update included
(:mod:`dgmix.training.step_graph`).
"""

from __future__ import annotations

import torch
from torch import nn

from dgmix.training.distributed import DistContext

__all__ = ["GraphedForward", "maybe_graph"]


def _signature(args: tuple[torch.Tensor, ...]) -> tuple:
    return tuple((tuple(a.shape), a.dtype, a.stride(), a.device) for a in args)


class GraphedForward(nn.Module):
    """Call ``module`` through CUDA graphs of its forward and backward, captured on first use."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self._graphed = None
        self._signature: tuple | None = None

    def _capture(self, args: tuple[torch.Tensor, ...]) -> None:
        saved = {k: b.detach().clone() for k, b in self.module.named_buffers()}
        sample = tuple(a.detach().clone() for a in args)
        torch.cuda.make_graphed_callables(self.module, sample)
        # make_graphed_callables patches the module's forward in place; keep the graphed forward
        # here and give the module back its own, so eval-mode and no-grad calls elsewhere (BN
        # re-estimation, embedding) and state_dict() are untouched
        self._graphed = self.module.forward
        del self.module.forward
        with torch.no_grad():
            for k, b in self.module.named_buffers():
                b.copy_(saved[k])
        self._signature = _signature(args)

    def forward(self, *args: torch.Tensor):  # noqa: ANN201 - whatever the wrapped module returns
        graphable = (self.training and torch.is_grad_enabled() and all(a.is_cuda for a in args)
                     and not any(a.requires_grad for a in args))
        if not graphable:
            return self.module(*args)
        if self._graphed is None:
            self._capture(args)
        if _signature(args) != self._signature:
            raise RuntimeError(
                "CUDA-graphed module called with new input shapes; set cuda_graphs: none for this stage"
            )
        return self._graphed(*args)


def maybe_graph(model: nn.Module, enabled: bool, ctx: DistContext) -> nn.Module:
    """``model`` wrapped in :class:`GraphedForward` when ``enabled`` and training on one CUDA device.

    On a CPU the option does nothing (there are no CUDA graphs; the step is the eager one).
    """
    if not enabled or ctx.device.type != "cuda":
        return model
    if ctx.is_distributed:
        raise ValueError("cuda_graphs: forward cannot be combined with DDP (torchrun); set it to none")
    return GraphedForward(model)
