"""Scale-out helpers for ``torchrun``: process group, device, global batch norm, gather with gradients.

Under ``torchrun --nproc_per_node=N -m dgmix pretrain ...`` every process reads ``RANK``,
``WORLD_SIZE`` and ``LOCAL_RANK`` from the environment. On CUDA we use NCCL and
``torch.nn.SyncBatchNorm``. On CPU (gloo) ``SyncBatchNorm`` refuses to run, so
:class:`GlobalBatchNorm` does the same job there: batch statistics are summed over all ranks with
autograd-aware ``all_reduce``, so the forward pass equals a single process on the concatenated batch.

The variance and covariance terms must see the whole global batch, so embeddings are
gathered across ranks *with gradients* (:func:`gather_with_grad`) before the loss. Every rank then
computes the same global loss; the backward of the gather sums the gradients of all ranks' copies
into each rank's slice (a factor of world size), and DDP's gradient averaging divides it out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistContext:
    """Where this process sits: rank, world size and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_from_env(device: str | None = None) -> DistContext:
    """Initialise the process group if torchrun's variables are set; pick the device.

    ``device``: None = CUDA when available (one GPU per local rank), else CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def shutdown() -> None:
    """End this process's part in the process group (the CLI calls it after a torchrun stage)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _multi_process() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients over ranks (all_reduce) and
    returns this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        x = x.contiguous()
        out = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(out, x)
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        stacked = torch.stack([g.contiguous() for g in grads])
        dist.all_reduce(stacked)
        return stacked[dist.get_rank()]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping the autograd graph.

    The variance and covariance terms are statistics of the whole batch: with several processes
    they must see the global batch, otherwise the loss changes. The backward pass sums the
    gradients that every rank's (identical) loss sends to this rank's slice; DDP's gradient
    averaging then gives exactly the gradient of the global-batch loss. Every rank must pass the
    same shape (the loop drops the last partial batch). Without an initialised process group (or
    with one process) ``x`` is returned unchanged.
    """
    return torch.cat(_GatherWithGrad.apply(x), dim=0) if _multi_process() else x


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the backward sums the incoming gradients over ranks too."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = grad.contiguous().clone()
        dist.all_reduce(out)
        return out


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0 (no gradient)."""
    if not _multi_process():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics span all ranks (a CPU/gloo-capable SyncBatchNorm).

    Works for (N, C, ...) inputs. Outside a process group it is an ordinary batch norm.
    Running statistics use the unbiased global variance, like ``nn.BatchNorm``.
    """

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {input.dim()}-D")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(input)
        # Two passes (mean, then squared deviations) for the same precision as nn.BatchNorm.
        dims = [0] + list(range(2, input.dim()))
        c = input.shape[1]
        shape = [1, c] + [1] * (input.dim() - 2)
        count = torch.tensor([float(input.numel() // c)], dtype=input.dtype, device=input.device)
        total = _AllReduceSum.apply(torch.cat([input.sum(dim=dims), count]))
        n = total[c]
        mean = total[:c] / n
        centred = input - mean.view(shape)
        var = _AllReduceSum.apply((centred * centred).sum(dim=dims)) / n
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * (n / (n - 1.0)).clamp_min(0.0)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        out = centred / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm with a globally synchronised one (SyncBatchNorm on CUDA)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_global(module)


def _convert_global(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        ref = module.weight if module.affine else module.running_mean
        out = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, device=None if ref is None else ref.device,
                              dtype=None if ref is None else ref.dtype)
        out.load_state_dict(module.state_dict())  # parameters and running statistics
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_global(child))
    return out


def resolve_device(name: str) -> str:
    """A ``--device`` value as a torch device string: "auto" is CUDA when available, else CPU."""
    from dgmix.errors import InputError

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda"):
        raise InputError("--device", f"must be auto, cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", "is cuda but no CUDA device is available")
    return name
