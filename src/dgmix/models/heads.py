"""Heads on top of the encoder: the DG-Mix/VICReg expander h_phi (paper §3.3) and the section-ID
classifier used for fine-tuning (paper §3.4)."""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Expander", "SectionClassifier"]


class Expander(nn.Module):
    """Expander h_phi (paper §3.3): ``n_layers`` fully-connected layers of size ``hidden``.

    The paper: "three fully-connected layers of size 1280. Each of the layers is followed by a
    batch normalization layer and a ReLU activation function" -- the last layer included (VICReg's
    own expander ends with a plain Linear; this one does not). Linear layers keep PyTorch's
    default initialisation, as in VICReg's code.

    Args:
        in_dim: input size (the encoder's 320-d embedding Y).
        hidden: width of every layer, also the output dimension D (1280).
        n_layers: number of Linear layers (3), each followed by BatchNorm1d + ReLU.
    """

    def __init__(self, in_dim: int = 320, hidden: int = 1280, n_layers: int = 3) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"Expander needs n_layers >= 1, got {n_layers}")
        self.in_dim, self.out_dim = int(in_dim), int(hidden)
        self.net = nn.Sequential(*[m for i in range(n_layers) for m in (
            nn.Linear(in_dim if i == 0 else hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True))])

    def forward(self, y: Tensor) -> Tensor:
        """(N, in_dim) embeddings Y -> (N, hidden) embeddings Z."""
        return self.net(y)


class SectionClassifier(nn.Module):
    """Section-ID classifier for fine-tuning (paper §3.4): Linear(320, 128) -> ReLU ->
    Linear(128, n_classes); outputs logits.

    ``n_classes`` (the number of sections of the machine type, 6 in DCASE 2022) has no default
    but keeps the contract's position (third), so ``SectionClassifier(n_classes=6)`` and
    ``SectionClassifier(320, 128, 6)`` both work.
    """

    def __init__(self, in_dim: int = 320, hidden: int = 128, n_classes: int | None = None) -> None:
        super().__init__()
        if n_classes is None or n_classes < 1:
            raise ValueError(f"SectionClassifier: n_classes >= 1 is required, got {n_classes}")
        self.in_dim, self.n_classes = int(in_dim), int(n_classes)
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_classes))

    def forward(self, y: Tensor) -> Tensor:
        """(N, in_dim) embeddings -> (N, n_classes) logits."""
        return self.net(y)
