"""Feature cache: content-keyed reuse, partial reuse after an interruption, damage detection."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from codegraph_ad.api import detect
from codegraph_ad.config import FeatureConfig, RunConfig
from codegraph_ad.features.cache import (
    SUFFIX,
    CorruptEntryError,
    FeatureCache,
    cache_key_fields,
    decode_entry,
    default_cache_root,
    encode_entry,
)

from . import corpus
from .conftest import CountingBackbone, small_config


def _entries(root: Path) -> list[Path]:
    return sorted(root.rglob(f"*{SUFFIX}"))


def _entry(seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, 6, 5)).astype(np.float32), rng.standard_normal(5).astype(np.float32), (2, 3)


def test_entry_round_trip_is_exact() -> None:
    layers, cls, grid = _entry()
    got_layers, got_cls, got_grid = decode_entry(encode_entry(layers, cls, grid))
    assert np.array_equal(got_layers, layers) and np.array_equal(got_cls, cls) and got_grid == grid


@pytest.mark.parametrize("damage, why", [
    (lambda b: b[: len(b) - 7], "truncated"),
    (lambda b: b[:-1] + bytes([b[-1] ^ 1]), "checksum mismatch"),
    (lambda b: b"garbage" + b, "bad magic"),
    (lambda b: b[:20], "unreadable header|truncated"),
])
def test_damaged_entries_are_detected(damage, why: str) -> None:  # noqa: ANN001
    data = encode_entry(*_entry())
    with pytest.raises(CorruptEntryError, match=why):
        decode_entry(damage(data))


def test_corrupt_entry_is_warned_deleted_and_missed(tmp_path: Path) -> None:
    store = FeatureCache(tmp_path, {"k": 1})
    store.put("ab" * 32, *_entry())
    path = store.path_for("ab" * 32)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.warns(UserWarning, match="corrupt feature cache entry"):
        assert store.get("ab" * 32) is None
    assert not path.exists() and store.stats.corrupt == 1


def test_key_separates_configurations() -> None:
    a = cache_key_fields(FeatureConfig(image_size=56))
    assert a != cache_key_fields(FeatureConfig(image_size=112))
    assert a != cache_key_fields(FeatureConfig(image_size=56, layers=(12,)))
    assert a != cache_key_fields(FeatureConfig(image_size=56, final_norm=True))
    assert a != cache_key_fields(FeatureConfig(image_size=56, checkpoint="/x.pth"))
    assert a == cache_key_fields(FeatureConfig(image_size=56, batch_size=1))  # batch size changes nothing
    assert a != cache_key_fields(FeatureConfig(image_size=56), backbone=object())


def test_default_root_follows_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CODEGRAPH_AD_CACHE", str(tmp_path / "c"))
    assert default_cache_root() == tmp_path / "c" / "features"
    monkeypatch.delenv("CODEGRAPH_AD_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_root() == tmp_path / "x" / "codegraph-ad" / "features"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_root() == Path.home() / ".cache" / "codegraph-ad" / "features"


def test_rerun_extracts_nothing_and_new_images_only(tmp_path: Path, backbone) -> None:  # noqa: ANN001
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 6)
    cache = tmp_path / "cache"
    cfg = small_config()
    first = CountingBackbone(backbone)
    r1 = detect(folder, None, cfg, backbone=first, progress=False, cache=True, cache_dir=cache)
    assert first.images == 6 and len(_entries(cache)) == 6
    assert r1.timings["features_extracted"] == 6 and r1.timings["features_cached"] == 0

    second = CountingBackbone(backbone)
    r2 = detect(folder, None, cfg, backbone=second, progress=False, cache=True, cache_dir=cache)
    assert second.calls == 0 and r2.timings["features_cached"] == 6
    assert np.array_equal(r1.scores.image_scores, r2.scores.image_scores)
    assert np.array_equal(r1.scores.patch_scores, r2.scores.patch_scores)

    # A renamed copy hits (content key); two new images are the only ones extracted.
    shutil.copy(folder / "normal_000.png", folder / "renamed.png")
    corpus.normal_set(folder, 2, start_seed=100)
    third = CountingBackbone(backbone)
    with pytest.warns(UserWarning, match="byte-identical"):
        r3 = detect(folder, None, cfg, backbone=third, progress=False, cache=True, cache_dir=cache)
    assert third.images == 2 and r3.timings["features_extracted"] == 2 and len(_entries(cache)) == 8

    # A damaged entry is reported and only that image is recomputed.
    victim = _entries(cache)[0]
    victim.write_bytes(victim.read_bytes()[:100])
    fourth = CountingBackbone(backbone)
    with pytest.warns(UserWarning) as record:
        r4 = detect(folder, None, cfg, backbone=fourth, progress=False, cache=True, cache_dir=cache)
    assert any("corrupt feature cache entry" in str(w.message) for w in record)
    assert fourth.images == 1 and r4.timings["features_cache_corrupt"] == 1
    assert np.array_equal(r3.scores.image_scores, r4.scores.image_scores)


def test_interrupted_extraction_keeps_finished_batches(tmp_path: Path, backbone) -> None:  # noqa: ANN001
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 10)
    cache = tmp_path / "cache"
    cfg = small_config()  # batch_size 4
    failing = CountingBackbone(backbone, fail_on_call=3)
    with pytest.raises(KeyboardInterrupt):
        detect(folder, tmp_path / "out", cfg, backbone=failing, progress=False, overlays=False, cache=True,
               cache_dir=cache)
    assert len(_entries(cache)) == 8  # two finished batches of 4
    assert not [p for p in cache.rglob("*") if p.is_file() and p.suffix not in (SUFFIX, ".json")]
    assert not (tmp_path / "out").exists()

    again = CountingBackbone(backbone)
    res = detect(folder, tmp_path / "out", cfg, backbone=again, progress=False, overlays=False, cache=True,
                 cache_dir=cache)
    assert again.images == 2 and res.timings["features_cached"] == 8
    fresh = detect(folder, None, cfg, backbone=backbone, progress=False, cache=False)
    assert np.array_equal(res.scores.image_scores, fresh.scores.image_scores)


def test_cache_off_and_auto_with_given_backbone_write_nothing(tmp_path: Path, backbone) -> None:  # noqa: ANN001
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 3)
    detect(folder, None, small_config(), backbone=backbone, progress=False, cache=False, cache_dir=tmp_path / "c1")
    detect(folder, None, small_config(), backbone=backbone, progress=False, cache_dir=tmp_path / "c2")
    assert not (tmp_path / "c1").exists() and not (tmp_path / "c2").exists()


def test_unwritable_cache_only_warns(tmp_path: Path, backbone) -> None:  # noqa: ANN001
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 3)
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="cannot write the feature cache"):
        res = detect(folder, None, small_config(), backbone=backbone, progress=False, cache=True, cache_dir=blocker)
    assert np.isfinite(res.scores.image_scores).all()


def test_cli_cache_options(tmp_path: Path, private_cache: Path) -> None:
    from codegraph_ad.cli import main

    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 3)
    small = ["--image-size", "56", "--method", "musc", "--no-overlays", "--quiet"]
    assert main(["detect", str(folder), "--out", str(tmp_path / "a"), "--cache-dir", str(tmp_path / "c"), *small]) == 0
    assert len(_entries(tmp_path / "c")) == 3
    before = set(_entries(private_cache))
    assert main(["detect", str(folder), "--out", str(tmp_path / "b"), "--no-cache", *small]) == 0
    assert set(_entries(private_cache)) == before


def test_run_config_default_cache_is_env_root(tmp_path: Path, private_cache: Path) -> None:
    """Without options the CLI-style run (backbone from the config) caches under $CODEGRAPH_AD_CACHE."""
    folder = tmp_path / "imgs"
    corpus.normal_set(folder, 3, start_seed=500)
    cfg = RunConfig(method="musc", features=FeatureConfig(image_size=56))
    res = detect(folder, None, cfg, progress=False)
    assert res.timings["features_extracted"] == 3
    assert len([p for p in _entries(private_cache / "features")]) >= 3
