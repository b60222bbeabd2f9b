"""What every fitted scorer module shares: its settings travel in the state dict, and its buffers
take the sizes of the fit they were saved from (:class:`~dgmix.scoring.knn.KNNScorer`,
:class:`~dgmix.scoring.gmm.GMMScorer`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FittedScorer(nn.Module):
    """Base of the scorers a detector bundle stores: subclasses name their constructor settings in
    ``_CONFIG`` and check them in ``_validate``; ``n_fit_clips`` counts the clips of the fit."""

    _CONFIG: tuple[str, ...] = ()
    n_fit_clips: int = 0

    def _validate(self) -> None:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The constructor arguments (plain Python values)."""
        return {name: getattr(self, name) for name in self._CONFIG}

    def get_extra_state(self) -> dict[str, Any]:
        return {"config": self.config(), "n_fit_clips": self.n_fit_clips}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        for name, value in state["config"].items():
            if name not in self._CONFIG:
                raise ValueError(f"unknown {type(self).__name__} setting {name!r} in the state dict")
            setattr(self, name, value)
        self.n_fit_clips = int(state.get("n_fit_clips", 0))
        self._validate()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # buffers are sized by the fit: take the incoming shapes before copying
        for name, buf in list(self._buffers.items()):
            key = prefix + name
            if buf is not None and key in state_dict and state_dict[key].shape != buf.shape:
                self._buffers[name] = torch.empty(state_dict[key].shape, dtype=state_dict[key].dtype,
                                                  device=buf.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)
