"""Losses and patch targets against brute-force twins."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codegraph_ad.distill.config import LossConfig
from codegraph_ad.distill.losses import dice_loss, focal_loss, segmentation_loss
from codegraph_ad.distill.targets import grid_target


def test_focal_with_gamma_zero_is_binary_cross_entropy() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.rand(4, 10, generator=g) * 0.98 + 0.01
    y = torch.rand(4, 10, generator=g)
    assert float(focal_loss(p, y, gamma=0.0)) == pytest.approx(float(F.binary_cross_entropy(p, y)), rel=1e-5)


def test_focal_brute_force_binary() -> None:
    p = torch.tensor([0.9, 0.2, 0.6])
    y = torch.tensor([1.0, 0.0, 0.0])
    expected = np.mean([-(0.1 ** 2) * np.log(0.9), -(0.2 ** 2) * np.log(0.8), -(0.6 ** 2) * np.log(0.4)])
    assert float(focal_loss(p, y, gamma=2.0)) == pytest.approx(expected, rel=1e-5)
    weighted = np.mean([-0.25 * 0.1 ** 2 * np.log(0.9), -0.75 * 0.2 ** 2 * np.log(0.8), -0.75 * 0.6 ** 2 * np.log(0.4)])
    assert float(focal_loss(p, y, gamma=2.0, alpha=0.25)) == pytest.approx(weighted, rel=1e-5)


def test_dice_brute_force_and_perfect_prediction() -> None:
    p = torch.tensor([[0.5, 1.0, 0.0]])
    y = torch.tensor([[1.0, 1.0, 0.0]])
    assert float(dice_loss(p, y, smooth=0.0)) == pytest.approx(1 - 2 * 1.5 / (1.5 + 2.0))
    assert float(dice_loss(y, y)) == pytest.approx(0.0, abs=1e-6)
    empty = torch.zeros(2, 5)
    assert float(dice_loss(empty, empty)) == pytest.approx(0.0)


def test_segmentation_loss_checks_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        segmentation_loss(torch.zeros(2, 3), torch.zeros(2, 4), LossConfig())


def test_grid_target_is_the_block_mean() -> None:
    mask = np.zeros((16, 12), dtype=bool)
    mask[0:4, 0:3] = True
    mask[5, 5] = True
    t = grid_target(mask, (4, 4)).reshape(4, 4).numpy()
    brute = mask.reshape(4, 4, 4, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(t, brute, rtol=1e-6)
    assert grid_target(None, (3, 5)).shape == (15,)
    assert float(grid_target(None, (3, 5)).sum()) == 0.0
