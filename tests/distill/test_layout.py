"""Mask paths in the MVTec layout and reading run folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from codegraph_ad.distill.layout import find_mask, mask_relpaths
from codegraph_ad.errors import InputError
from codegraph_ad.io.run_folder import read_run_folder


def test_mask_relpaths_follow_mvtec_and_fall_back_on_clashes() -> None:
    paths = [Path("/d/test/broken/000.png"), Path("/a/good/001.png"), Path("/b/good/001.png")]
    rel = mask_relpaths(paths, ["broken__000", "a__good__001", "b__good__001"])
    assert rel[0] == Path("ground_truth/broken/000_mask.png")
    assert rel[1] == Path("ground_truth/a__good__001_mask.png")
    assert rel[2] == Path("ground_truth/b__good__001_mask.png")
    with pytest.raises(InputError, match="same mask file"):
        mask_relpaths(paths)


def test_find_mask_in_category_and_bare_folders(tmp_path: Path) -> None:
    (tmp_path / "cat" / "ground_truth" / "broken").mkdir(parents=True)
    (tmp_path / "cat" / "ground_truth" / "broken" / "003_mask.png").write_bytes(b"x")
    img = tmp_path / "cat" / "test" / "broken" / "003.png"
    assert find_mask(tmp_path / "cat", img) == tmp_path / "cat" / "ground_truth" / "broken" / "003_mask.png"
    assert find_mask(tmp_path / "cat" / "ground_truth", img) is not None
    assert find_mask(tmp_path / "cat", tmp_path / "cat" / "test" / "good" / "000.png") is None


def test_read_run_needs_a_manifest_and_its_maps(tmp_path: Path, toy_run: dict) -> None:
    with pytest.raises(InputError, match="run.json"):
        read_run_folder(tmp_path / "nowhere")
    run = read_run_folder(toy_run["run"])
    assert len(run) == 8 and run.grid == (8, 8)
    assert run.load_map(0).shape == (64, 64)
    run.map_path(1).unlink()
    with pytest.raises(InputError, match="missing"):
        run.load_map(1)
