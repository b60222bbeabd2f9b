"""Atomic checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint holds plain tensors, numbers, strings, lists and dicts only: model and optimizer
state dicts, the scheduler state, the epoch, the RNG states (as uint8 tensors) and the resolved
config as a dict. It is written to a temp file in the same directory and renamed into place, so a
crash mid-write never leaves a truncated ``last.pt``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from dgmix.errors import InputError
from dgmix.io_atomic import atomic_path


def rng_state(generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """The torch RNG states this project draws from (global CPU, CUDA if present, a generator)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``path`` atomically (temp file, fsync, ``os.replace``: :mod:`dgmix.io_atomic`)."""
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``; a missing or corrupt file is an InputError."""
    path = Path(path)
    try:
        if path.is_dir():
            raise InputError(path, "is a folder, not a checkpoint or detector file")
        if not path.exists():
            raise InputError(path, "a broken symbolic link (or a link loop)" if path.is_symlink()
                             else "checkpoint not found")
        size = path.stat().st_size
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:  # a symlink loop, a permission problem
        raise InputError(path, f"cannot open it ({exc.strerror or exc})") from None
    if size == 0:
        raise InputError(path, "empty file (0 bytes), not a checkpoint or detector")
    if magic != b"PK\x03\x04" and not magic.startswith(b"\x80"):  # torch's zip format, or its legacy pickle
        raise InputError(path, "not a torch file (dgmix detectors and checkpoints are torch.save zip archives)")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused an object: never load such a file unchecked
        raise InputError(path, "holds Python objects besides tensors and plain values, so it is not loaded "
                               "(it is not a dgmix file, or not one from a trusted source)") from None
    except Exception as exc:  # noqa: BLE001 - any other reading failure is a bad file for the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise InputError(path, f"damaged: cut short or not fully copied? ({first})") from None
