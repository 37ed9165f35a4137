"""Tokens held in float16 (FeatureConfig.token_dtype): half the memory, the same scores.

The methods compute in float32 from the held tokens (LNAMD casts each chunk), so a batch
held in float16 must score exactly like the same float16 values held in float32; only the
rounding to float16 itself moves a score, by about 1e-6.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codegraph_ad.config import FeatureConfig
from codegraph_ad.engine.memory import estimate_memory
from codegraph_ad.errors import ConfigError
from codegraph_ad.features.extract import FeatureSet, held_as, resolve_token_dtype
from codegraph_ad.features.extractor import FeatureExtractor
from codegraph_ad.methods.codegraph import CoDeGraph
from codegraph_ad.methods.musc import MuSc
from codegraph_ad.cli import main as cli_main
from tests.graph.test_planted_groups import modal_batch


def _as_float32_copy(features: FeatureSet) -> FeatureSet:
    return FeatureSet(features.layers.float(), features.cls, features.grid, features.lattice)


@pytest.fixture(scope="module")
def planted_half() -> tuple[FeatureSet, np.ndarray]:
    batch = modal_batch(0.30, 0)  # a case tests/graph/test_planted_groups.py finds and excludes
    return held_as(batch.features, "float16"), batch.planted


def test_from_arrays_keeps_float16_and_casts_everything_else() -> None:
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 8))
    assert FeatureSet.from_arrays(x.astype(np.float16), grid=(2, 2)).layers.dtype == torch.float16
    assert FeatureSet.from_arrays(x, grid=(2, 2)).layers.dtype == torch.float32
    bf16 = torch.from_numpy(x).to(torch.bfloat16)
    assert FeatureSet.from_arrays(bf16, grid=(2, 2)).layers.dtype == torch.float32


def test_held_as_rounds_once_and_keeps_cls_and_grid() -> None:
    fs = FeatureSet(torch.randn(4, 2, 6, 8), torch.randn(4, 5), (2, 3))
    half = held_as(fs, "float16")
    assert half.layers.dtype == torch.float16 and half.cls is fs.cls and half.grid == fs.grid
    assert held_as(half, "float16") is half
    assert torch.equal(held_as(half, "float32").layers, fs.layers.half().float())
    assert half.layers.element_size() * 2 == fs.layers.element_size()


@pytest.mark.parametrize("params", [{}, {"references": 12, "random_references": 0.25}, {"screening_percent": 60}],
                         ids=["exact", "fixed-K", "screening"])
def test_codegraph_scores_equal_bit_for_bit(planted_half, params) -> None:
    """The planted group is excluded, so the refinement's LNAMD reads the float16 tokens too."""
    half, planted = planted_half
    a = CoDeGraph(seed=0, **params).fit_predict(half)
    b = CoDeGraph(seed=0, **params).fit_predict(_as_float32_copy(half))
    assert a.diagnostics["exclusion_rate"] > 0, "the planted group must be excluded for this test to bite"
    assert torch.equal(a.patch_scores, b.patch_scores)
    assert np.array_equal(np.asarray(a.image_scores), np.asarray(b.image_scores))


def test_musc_scores_equal_bit_for_bit(planted_half) -> None:
    half, _ = planted_half
    a = MuSc().fit_predict(half)
    b = MuSc().fit_predict(_as_float32_copy(half))
    assert torch.equal(a.patch_scores, b.patch_scores)


def test_rounding_to_float16_moves_scores_by_little() -> None:
    """What choosing float16 costs: the rounding of the tokens, not the computation."""
    batch = modal_batch(0.30, 0)
    full = MuSc().fit_predict(batch.features).patch_scores
    half = MuSc().fit_predict(held_as(batch.features, "float16")).patch_scores
    diff = (full - half).abs().max().item()
    assert 0 < diff < 1e-3 * full.abs().max().item()


def test_memory_estimate_counts_two_bytes_per_token() -> None:
    args = (1000, 256, 384, 4, 3, "codegraph")
    f32 = estimate_memory(*args, slots=100, feature_bytes=4)
    f16 = estimate_memory(*args, slots=100, feature_bytes=2)
    assert f32.total_mb - f16.total_mb == pytest.approx(1000 * 256 * 384 * 4 * 2 / 1e6, rel=1e-6)


def test_config_refuses_other_dtypes() -> None:
    """(--token-dtype itself is covered with every other field by tests/cli/test_more_options.py.)"""
    assert FeatureConfig().token_dtype == "auto"
    with pytest.raises(ConfigError, match="token_dtype"):
        FeatureConfig(token_dtype="int8")


def _images(folder: Path, n: int = 6, size: int = 28) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_extractor_holds_float16_with_and_without_the_cache(tmp_path) -> None:
    folder = _images(tmp_path / "imgs")
    params = dict(image_size=28, layers=(1, 2), batch_size=4)
    full = FeatureExtractor(cache=False, **params).transform(folder)
    for cache in (False, True, True):  # no cache, then the cache written, then read back
        half = FeatureExtractor(cache=cache, cache_dir=tmp_path / "cache", token_dtype="float16", **params
                                ).transform(folder)
        assert half.layers.dtype == torch.float16 and half.cls.dtype == torch.float32
        assert torch.equal(half.layers, full.layers.half())


def test_detect_with_float16_tokens_end_to_end(tmp_path) -> None:
    folder = _images(tmp_path / "imgs")
    common = ["detect", str(folder), "--image-size", "28", "--layers", "1,2", "--method", "musc",
              "--quiet", "--no-overlays", "--no-cache"]
    assert cli_main([*common, "--out", str(tmp_path / "f32")]) == 0
    assert cli_main([*common, "--out", str(tmp_path / "f16"), "--token-dtype", "float16"]) == 0
    run = json.loads((tmp_path / "f16" / "run.json").read_text())
    assert run["config"]["features"]["token_dtype"] == "float16"
    a = json.loads((tmp_path / "f32" / "scores.json").read_text())
    b = json.loads((tmp_path / "f16" / "scores.json").read_text())
    sa = np.array([r["score"] for r in a["images"]])
    sb = np.array([r["score"] for r in b["images"]])
    assert not np.array_equal(sa, sb)  # the tokens were rounded ...
    np.testing.assert_allclose(sa, sb, rtol=1e-3)  # ... and the scores barely moved


def test_auto_is_float16_only_for_fixed_k_plans() -> None:
    assert resolve_token_dtype("auto", 1000, None) == "float32"  # exact: scores to the last digit
    assert resolve_token_dtype("auto", 1000, 100) == "float16"  # fixed K = 100 < N - 1
    assert resolve_token_dtype("auto", 101, 100) == "float32"  # K = N - 1 is the exact plan
    assert resolve_token_dtype("auto", 50, 100) == "float32"
    assert resolve_token_dtype("float32", 1000, 100) == "float32"  # an explicit dtype is kept
    assert resolve_token_dtype("float16", 10, None) == "float16"
    feats = FeatureSet(torch.zeros(6, 1, 4, 8), None, (2, 2))
    assert held_as(feats, "auto").layers.dtype == torch.float32  # no plan known: exact
    assert held_as(feats, "auto", references=2).layers.dtype == torch.float16
    assert held_as(feats, "auto", references=5).layers.dtype == torch.float32


def test_detect_holds_a_fixed_k_batch_in_float16_by_default(tmp_path) -> None:
    """The default (auto) scores a fixed-K batch exactly as --token-dtype float16 does, and
    an exact batch exactly as float32 does."""
    folder = _images(tmp_path / "imgs", n=8)
    common = ["detect", str(folder), "--image-size", "28", "--layers", "1,2", "--method", "musc",
              "--quiet", "--no-overlays", "--no-cache"]

    def scores(name: str, *extra: str) -> np.ndarray:
        assert cli_main([*common, "--out", str(tmp_path / name), *extra]) == 0
        rows = json.loads((tmp_path / name / "scores.json").read_text())["images"]
        return np.array([r["score"] for r in rows])

    fixed = ("--references", "3")
    auto_fixed = scores("auto_fixed", *fixed)
    np.testing.assert_array_equal(auto_fixed, scores("f16_fixed", *fixed, "--token-dtype", "float16"))
    assert not np.array_equal(auto_fixed, scores("f32_fixed", *fixed, "--token-dtype", "float32"))
    auto_exact = scores("auto_exact")
    np.testing.assert_array_equal(auto_exact, scores("f32_exact", "--token-dtype", "float32"))
    assert not np.array_equal(auto_exact, scores("f16_exact", "--token-dtype", "float16"))
