"""``pseudomask`` on a run folder: PNG masks in the MVTec layout, summary, CLI."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codegraph_ad import cli
from codegraph_ad.distill import commands
from codegraph_ad.distill.config import PseudoMaskConfig
from codegraph_ad.distill.pseudomask_run import SUMMARY, write_pseudomasks
from codegraph_ad.errors import InputError


def distill_cli(argv: list[str]) -> int:
    """This package's subcommands alone (other areas' commands are not needed here)."""
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers(dest="command"))
    a = parser.parse_args(argv)
    return int(a.func(a))


def test_masks_in_mvtec_layout_match_the_defects(tmp_path: Path, toy_run: dict) -> None:
    out = tmp_path / "pm"
    # beta 1e-4: the toy maps hold i.i.d. noise, of which beta 0.01 flags a few percent
    s = write_pseudomasks(toy_run["run"], out, PseudoMaskConfig(scope="batch", beta=1e-4), progress=False)
    assert [r["name"] for r in s.rows] == toy_run["names"]
    for row, path, true_mask in zip(s.rows, s.mask_paths, toy_run["masks"]):
        parent = "good" if row["name"].startswith("good") else "stain"
        assert path == out / "ground_truth" / parent / f"{row['name'].split('__')[1]}_mask.png"
        arr = np.asarray(Image.open(path))
        assert set(np.unique(arr)) <= {0, 255}
        pred = arr > 0
        if true_mask.any():
            assert pred[true_mask].all()  # the blurred toy map widens the region by ~2 px
            assert (pred & true_mask).sum() / (pred | true_mask).sum() > 0.6
        else:
            assert pred.mean() < 0.01
    summary = json.loads((out / SUMMARY).read_text())
    assert summary["n_images"] == 8 and summary["n_with_anomaly"] >= 4
    assert summary["config"]["scope"] == "batch" and summary["batch_fit"]["threshold"] > 0.3


def test_refuses_to_overwrite_without_flag(tmp_path: Path, toy_run: dict) -> None:
    write_pseudomasks(toy_run["run"], tmp_path / "pm", progress=False)
    with pytest.raises(InputError, match="overwrite"):
        write_pseudomasks(toy_run["run"], tmp_path / "pm", progress=False)
    write_pseudomasks(toy_run["run"], tmp_path / "pm", overwrite=True, progress=False)


def test_cli_pseudomask(tmp_path: Path, toy_run: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert "codegraph_ad.distill.commands" in cli._COMMAND_MODULES
    rc = distill_cli(["pseudomask", str(toy_run["run"]), "--out", str(tmp_path / "pm"), "--q", "0.9",
                      "--beta", "0.05", "--scope", "image", "--quiet"])
    assert rc == 0
    summary = json.loads((tmp_path / "pm" / SUMMARY).read_text())
    assert summary["config"]["q"] == 0.9 and summary["config"]["beta"] == 0.05
    assert all("fit" in r for r in summary["images"])
    assert "8 masks written" in capsys.readouterr().out
