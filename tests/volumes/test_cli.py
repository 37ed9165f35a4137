"""The three volume subcommands through ``codegraph_ad.cli.main``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from codegraph_ad.cli import main
from tests.volumes.helpers import FakeBackbone, brain_volume, save


@pytest.fixture(autouse=True)
def fake_backbone(monkeypatch):
    monkeypatch.setattr("codegraph_ad.volumes.pipeline.load_volume_backbone", lambda cfg: FakeBackbone(cfg.size))


def test_make_cohort_then_evaluate_and_detect(tmp_path, capsys):
    vol, _ = brain_volume(shape=(44, 50, 40))
    src = save(tmp_path / "brain.nii.gz", vol, np.diag([2.0, 2.0, 2.0, 1.0]))
    cohort = tmp_path / "cohort"
    assert main(["make-cohort", "--out", str(cohort), "--source", str(src), "--healthy", "3", "--random", "1",
                 "--consistent", "1", "--voxel-mm", "3", "--quiet"]) == 0
    assert len(json.loads((cohort / "cohort.json").read_text())["subjects"]) == 5
    common = ["--size", "28", "--method", "musc", "--quiet", "--no-mosaics", "--void-fraction", "0.3"]
    assert main(["evaluate-volumes", str(cohort), "--out", str(tmp_path / "ev"), *common]) == 0
    out = capsys.readouterr().out
    assert "patient AUROC" in out and "Dice consistent" in out
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["config"]["size"] == 28 and metrics["config"]["run"]["lnamd"]["degrees"] == [1]
    assert main(["volumes", str(cohort / "volumes"), "--out", str(tmp_path / "det"), *common,
                 "--patient-min-share", "0.5", "--patient-baseline", "position-median",
                 "--projection-dim", "0"]) == 0
    assert len(list((tmp_path / "det" / "maps").glob("*.nii.gz"))) == 5
    run = json.loads((tmp_path / "det" / "run.json").read_text())
    assert run["config"]["patient_min_share"] == 0.5
    assert run["config"]["patient_baseline"] == "position-median"
    assert run["config"]["projection_dim"] == 0


def test_make_cohort_fixes_lesion_size_and_contrast(tmp_path, capsys):
    """Equal ends of a range fix the value: how a sensitivity study draws one kind of lesion."""
    vol, _ = brain_volume(shape=(44, 50, 40))
    src = save(tmp_path / "brain.nii.gz", vol, np.diag([2.0, 2.0, 2.0, 1.0]))
    cohort = tmp_path / "cohort"
    assert main(["make-cohort", "--out", str(cohort), "--source", str(src), "--healthy", "0", "--random", "3",
                 "--consistent", "0", "--voxel-mm", "3", "--lesion-diameter-mm", "12", "12",
                 "--lesion-contrast", "0.2", "0.2", "--quiet"]) == 0
    manifest = json.loads((cohort / "cohort.json").read_text())
    assert manifest["config"]["lesion"]["diameter_mm"] == [12.0, 12.0]
    lesions = [s["lesion"] for s in manifest["subjects"]]
    assert len(lesions) == 3
    assert all(max(le["diameters_mm"]) == pytest.approx(12.0) for le in lesions)
    assert all(abs(le["contrast"]) == pytest.approx(0.2) for le in lesions)
    assert main(["make-cohort", "--out", str(tmp_path / "bad"), "--source", str(src),
                 "--lesion-contrast", "0.4", "0.2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: contrast must be a range") and "(0.4, 0.2)" in err and "Traceback" not in err


def test_bad_volume_is_a_one_line_error(tmp_path, capsys):
    for i in range(3):
        save(tmp_path / "in" / f"v{i}.nii.gz", brain_volume(seed=i)[0])
    save(tmp_path / "in" / "v3.nii.gz", np.full((8, 8, 8), np.nan, np.float32))
    assert main(["volumes", str(tmp_path / "in"), "--out", str(tmp_path / "o"), "--size", "28", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "v3.nii.gz" in err and "NaN" in err


def test_volume_commands_default_to_the_volume_settings():
    """Volumes weight the endurance ratios by dbar^-0.5 (SPEC section 4), flag communities
    at Tukey kappa 1.5 among those of 3 or more volumes (2D runs keep alpha 0, kappa 3 and
    pairs), score patients against the position median and feed every second slice.
    All stay overridable."""
    from codegraph_ad.cli import build_parser
    from codegraph_ad.options import config_from_args
    from codegraph_ad.config import GraphConfig
    from codegraph_ad.volumes.cli import volume_config_from_args
    from codegraph_ad.volumes.config import VolumeConfig

    def graph_of(c):
        return c.alpha, c.kappa, c.min_community_size

    parser = build_parser()
    assert graph_of(VolumeConfig().run.graph) == (0.5, 1.5, 3)
    assert graph_of(GraphConfig()) == (0.5, 3.0, 2)
    for cmd in (["volumes", "in"], ["evaluate-volumes", "cohort"]):
        default = volume_config_from_args(parser.parse_args([*cmd, "--out", "o"]))
        assert graph_of(default.run.graph) == (0.5, 1.5, 3)
        assert default.patient_baseline == "position-median"
        assert default.slice_stride == 2
        given = volume_config_from_args(parser.parse_args([*cmd, "--out", "o", "--alpha", "0", "--kappa", "3",
                                                           "--min-community-size", "2",
                                                           "--patient-baseline", "none", "--slice-stride", "1"]))
        assert graph_of(given.run.graph) == (0.0, 3.0, 2)
        assert given.patient_baseline == "none"
        assert given.slice_stride == 1
    detect = parser.parse_args(["detect", "in", "--out", "o"])
    assert graph_of(config_from_args(detect).graph) == graph_of(GraphConfig())
    given = parser.parse_args(["detect", "in", "--out", "o", "--min-community-size", "4"])
    assert config_from_args(given).graph.min_community_size == 4
