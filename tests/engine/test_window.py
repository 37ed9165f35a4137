import pytest
import torch

from codegraph_ad.engine.window import _window_block, choose_tile, window_block, window_pair_cost
from tests.conftest import unit_features


def window_mask(h: int, w: int, radius: int) -> torch.Tensor:
    """(M, M) bool: Chebyshev grid distance <= radius, written independently of the kernel."""
    pos = torch.tensor([(y, x) for y in range(h) for x in range(w)])
    return (pos[:, None, :] - pos[None, :, :]).abs().amax(dim=2) <= radius


def brute(left: torch.Tensor, right: torch.Tensor, h: int, w: int, radius: int):
    """Full products in float64, -inf outside the window, max over the reference patches."""
    sim = torch.einsum("amc,bnc->abmn", left.double(), right.double())
    masked = sim.masked_fill(~window_mask(h, w, radius), float("-inf"))
    return masked.amax(dim=3), masked


def check(best, arg, left, right, h, w, radius):
    ref, masked = brute(left, right, h, w, radius)
    assert best.dtype == torch.float32 and best.shape == ref.shape
    assert torch.allclose(best.double(), ref, atol=1e-5, rtol=0)
    assert arg.dtype == torch.int16 and arg.shape == ref.shape
    # the argmax is a patch inside the window (finite there) that attains the maximum
    chosen = masked.gather(3, arg.long().unsqueeze(3)).squeeze(3)
    assert bool(torch.isfinite(chosen).all())
    assert torch.allclose(chosen, ref, atol=1e-5, rtol=0)


GRIDS = [(4, 4), (5, 7), (7, 5), (1, 6), (6, 1), (3, 3)]


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("radius", [0, 1, 2, 3, 9])
@pytest.mark.parametrize("n_left", [1, 3])
def test_window_block_matches_brute_force(grid, radius, n_left):
    h, w = grid
    left = unit_features(n_left, h * w, 16, seed=1)
    right = unit_features(4, h * w, 16, seed=2)
    best, arg = window_block(left, right, grid, radius)
    check(best, arg, left, right, h, w, radius)


@pytest.mark.parametrize("tile", [None, (1, 1), (2, 3), (3, 2), (4, 4), (8, 8)])
@pytest.mark.parametrize("radius", [0, 1, 3])
def test_every_tile_shape_gives_the_same_window_maxima(tile, radius):
    # tiles that do not divide the grid leave padded queries and padded window slots
    h, w = 5, 7
    left = unit_features(2, h * w, 8, seed=3)
    right = unit_features(3, h * w, 8, seed=4)
    best, arg = _window_block(left, right, h, w, radius, True, 64 << 20, tile)
    check(best, arg, left, right, h, w, radius)


@pytest.mark.parametrize("tile", [None, (2, 2), (2, 3)])
@pytest.mark.parametrize("budget", [1, 3000, 40000])
def test_tiny_budget_chunks_images_and_tile_rows(tile, budget):
    h, w = 6, 5
    left = unit_features(5, h * w, 8, seed=5)
    right = unit_features(7, h * w, 8, seed=6)
    best, arg = _window_block(left, right, h, w, 1, True, budget, tile)
    check(best, arg, left, right, h, w, 1)
    whole, _ = _window_block(left, right, h, w, 1, True, 64 << 20, tile)
    assert torch.allclose(best, whole, atol=1e-6, rtol=0)


def test_public_budget_is_honoured_for_larger_grids():
    h, w = 12, 10
    left = unit_features(3, h * w, 32, seed=7)
    right = unit_features(5, h * w, 32, seed=8)
    best, arg = window_block(left, right, (h, w), 2, budget_bytes=20000)
    check(best, arg, left, right, h, w, 2)


@pytest.mark.parametrize("grid", [(4, 4), (5, 7), (1, 6)])
def test_radius_covering_the_grid_gives_unrestricted_maxima(grid):
    h, w = grid
    left = unit_features(2, h * w, 16, seed=9)
    right = unit_features(3, h * w, 16, seed=10)
    full = torch.einsum("amc,bnc->abmn", left.double(), right.double()).amax(dim=3)
    for radius in (max(h, w) - 1, max(h, w), 100):
        best, _ = window_block(left, right, grid, radius)
        assert torch.allclose(best.double(), full, atol=1e-5, rtol=0)


def test_ties_resolve_to_a_patch_inside_the_window():
    # every reference patch is one of two vectors: most maxima are tied across the grid
    h, w = 6, 6
    left = unit_features(2, h * w, 8, seed=11)
    two = unit_features(1, 2, 8, seed=12)[0]
    right = two[torch.arange(h * w) % 2].expand(3, h * w, 8).contiguous()
    for radius in (0, 1, 2):
        best, arg = window_block(left, right, (h, w), radius)
        check(best, arg, left, right, h, w, radius)


def test_values_only_and_input_dtypes():
    h, w = 5, 7
    left = unit_features(2, h * w, 16, seed=13)
    right = unit_features(3, h * w, 16, seed=14)
    best, arg = window_block(left, right, (h, w), 2, with_argmax=False)
    assert arg is None
    ref, _ = brute(left, right, h, w, 2)
    assert torch.allclose(best.double(), ref, atol=1e-5, rtol=0)
    best64, arg64 = window_block(left.double(), right.double(), (h, w), 2)
    assert best64.dtype == torch.float32 and arg64.dtype == torch.int16
    # non-contiguous inputs (a transposed copy viewed back) work as well
    left_t = left.transpose(0, 1).contiguous().transpose(0, 1)
    best_t, _ = window_block(left_t, right, (h, w), 2)
    assert torch.allclose(best_t, best, atol=1e-6, rtol=0)


def test_integral_float_radius_is_accepted():
    left = unit_features(2, 12, 4, seed=17)
    right = unit_features(3, 12, 4, seed=18)
    best, arg = window_block(left, right, (3, 4), 1.0)
    check(best, arg, left, right, 3, 4, 1)


def test_empty_image_lists():
    left = unit_features(0, 12, 4)
    right = unit_features(3, 12, 4)
    best, arg = window_block(left, right, (3, 4), 1)
    assert best.shape == (0, 3, 12) and arg.shape == (0, 3, 12)


@pytest.mark.parametrize("grid", [(1, 1), (4, 4), (5, 7), (2, 9)])
@pytest.mark.parametrize("radius", [0, 1, 2, 5, 20])
def test_window_pair_cost_counts_the_mask(grid, radius):
    assert window_pair_cost(grid, radius) == int(window_mask(*grid, radius).sum())


def test_window_pair_cost_scales_as_m_times_window():
    assert window_pair_cost((16, 16), 100) == 256 ** 2
    # far from the borders each patch sees (2r+1)^2 patches
    assert window_pair_cost((32, 32), 3) < 1024 * 49
    assert window_pair_cost((32, 32), 3) > 0.8 * 1024 * 49


def test_dense_product_chosen_where_the_window_covers_the_grid():
    assert choose_tile(16, 16, 16, 15) is None
    assert choose_tile(16, 32, 32, 2) is not None


@pytest.mark.parametrize(
    ("left_shape", "right_shape", "grid", "radius", "message"),
    [
        ((2, 12, 8), (3, 12, 4), (3, 4), 1, "channels"),
        ((2, 12, 8), (3, 12, 8), (3, 5), 1, "patches per image"),
        ((2, 12, 8), (3, 10, 8), (3, 4), 1, "patches per image"),
        ((2, 12, 8), (3, 12, 8), (3, 4), -1, "non-negative"),
        ((2, 12, 8), (3, 12, 8), (3, 4), 1.5, "non-negative integer"),
        ((2, 12, 8), (3, 12, 8), (3, 4), None, "non-negative integer"),
        ((12, 8), (3, 12, 8), (3, 4), 1, "images, patches, channels"),
        ((2, 12, 8), (3, 12, 8), (0, 12), 1, "grid"),
    ],
)
def test_bad_input_raises_a_clear_error(left_shape, right_shape, grid, radius, message):
    with pytest.raises(ValueError, match=message):
        window_block(torch.zeros(left_shape), torch.zeros(right_shape), grid, radius)


def test_negative_radius_in_pair_cost_raises():
    with pytest.raises(ValueError, match="non-negative"):
        window_pair_cost((4, 4), -2)


def test_int16_overflow_is_refused_when_argmax_is_asked():
    h, w = 200, 200  # 40,000 patches do not fit int16 indices
    left, right = torch.zeros(1, h * w, 1), torch.zeros(1, h * w, 1)
    with pytest.raises(ValueError, match="int16"):
        window_block(left, right, (h, w), 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_inputs_stay_on_the_device():
    h, w = 8, 8
    left = unit_features(3, h * w, 32, seed=15)
    right = unit_features(4, h * w, 32, seed=16)
    best, arg = window_block(left.cuda(), right.cuda(), (h, w), 2)
    assert best.is_cuda and arg.is_cuda
    check(best.cpu(), arg.cpu(), left, right, h, w, 2)
