"""The distilled patch head: frozen multi-layer ViT tokens -> per-patch anomaly probability."""

from __future__ import annotations

import torch
from torch import nn

from codegraph_ad.distill.config import HeadConfig
from codegraph_ad.features.lnamd import lnamd


def head_inputs(layers: torch.Tensor, grid: tuple[int, int], degrees: tuple[int, ...]) -> torch.Tensor:
    """``layers: (B, L, M, C)`` raw tokens -> ``(B, M, L * len(degrees) * C)`` unit LNAMD tokens.

    The per-image LayerNorm inside LNAMD uses only the image itself, so the input of a single
    image is the same whether it was extracted alone or within a batch.
    """
    if layers.ndim != 4:
        raise ValueError(f"expected layer tokens of shape (B, L, M, C), got {tuple(layers.shape)}")
    parts = [lnamd(layers[:, li], grid, r) for li in range(layers.shape[1]) for r in degrees]
    return torch.cat(parts, dim=-1)


class PatchHead(nn.Module):
    """A per-patch MLP (or linear map when ``hidden == 0``) on ``head_inputs``; outputs logits."""

    def __init__(self, in_dim: int, config: HeadConfig = HeadConfig()) -> None:
        super().__init__()
        if in_dim < 1:
            raise ValueError(f"head input dimension must be positive, got {in_dim}")
        self.in_dim = in_dim
        self.config = config
        # Dropout only on the hidden layer: on the wide input (thousands of features per patch)
        # drawing the dropout mask cost more than the whole linear layer.
        if config.hidden > 0:
            self.net: nn.Module = nn.Sequential(
                nn.Linear(in_dim, config.hidden), nn.GELU(), nn.Dropout(config.dropout), nn.Linear(config.hidden, 1),
            )
        else:
            self.net = nn.Linear(in_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: (B, M, D)`` -> anomaly probability ``(B, M)``."""
        return torch.sigmoid(self.net(x).squeeze(-1))
