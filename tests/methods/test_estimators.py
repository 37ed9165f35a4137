"""Issue 24 item 2: MuSc and CoDeGraph as estimators with flat parameters; the METHODS registry."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pytest
import torch
from PIL import Image

from codegraph_ad import CoDeGraph, FeatureExtractor, MuSc, list_methods, register_method
from codegraph_ad.api import detect, score_features
from codegraph_ad.config import (
    EngineConfig,
    FeatureConfig,
    GraphConfig,
    LNAMDConfig,
    MSMConfig,
    RsCINConfig,
    RunConfig,
)
from codegraph_ad.errors import ConfigError, InputError
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods import make_method
from codegraph_ad.methods.base import Method, ScoreResult
from codegraph_ad.registry import METHODS

N, L, H, W, C = 6, 2, 4, 4, 16


def _tokens(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, L, H * W, C, generator=g), torch.randn(N, C, generator=g)


def _flat(cls_: type, renames: dict[str, str] | None = None) -> list[str]:
    renames = renames or {}
    return [renames.get(f.name, f.name) for f in fields(cls_)]


def test_flat_parameters_are_the_config_fields_with_their_defaults():
    rscin = {"enabled": "rscin", "k_list": "rscin_k_list"}
    assert list(CoDeGraph().get_params()) == (
        _flat(LNAMDConfig) + _flat(GraphConfig) + _flat(RsCINConfig, rscin) + _flat(EngineConfig)
        + ["progress", "patch_mask", "blocks"])
    assert list(MuSc().get_params()) == (
        _flat(LNAMDConfig) + _flat(MSMConfig) + _flat(RsCINConfig, rscin) + _flat(EngineConfig) + ["progress"])
    assert CoDeGraph().config == RunConfig(method="codegraph")
    assert MuSc().config == RunConfig(method="musc")
    assert CoDeGraph().get_params()["rscin"] is RsCINConfig().enabled


def test_get_set_params_and_repr():
    est = CoDeGraph(k_fraction=0.4, degrees=(1, 3))
    assert est.get_params()["k_fraction"] == 0.4 and est.get_params(deep=False)["degrees"] == (1, 3)
    assert repr(est) == "CoDeGraph(degrees=(1, 3), k_fraction=0.4)"
    assert est.set_params(alpha=0.0, rscin=True) is est
    assert est.config.graph.alpha == 0.0 and est.config.rscin.enabled
    with pytest.raises(ConfigError, match=r"no parameter 'alhpa'.*valid: degrees, k_fraction"):
        est.set_params(alhpa=1.0)
    with pytest.raises(TypeError):
        CoDeGraph(0.5)  # keyword-only, as in scikit-learn
    assert repr(MuSc()) == "MuSc()"


def test_init_stores_values_and_fitting_validates_them_naming_the_parameter():
    x, _ = _tokens()
    est = CoDeGraph(k_fraction=1.5, degrees=[1, 3])
    assert est.k_fraction == 1.5 and est.degrees == [1, 3]  # stored unchanged
    with pytest.raises(ConfigError, match=r"CoDeGraph: k_fraction must be in \(0, 1\), got 1.5"):
        est.fit_predict(x, grid=(H, W))
    with pytest.raises(ConfigError, match=r"MuSc: rscin_k_list must be"):
        MuSc(rscin_k_list=(0,)).fit_predict(x, grid=(H, W))
    with pytest.raises(ConfigError, match=r"precision must be one of"):
        MuSc(precision="fp8").fit_predict(x, grid=(H, W))
    assert est.set_params(k_fraction=0.5).config.lnamd.degrees == (1, 3)  # lists become tuples


def test_from_config_round_trip():
    cfg = RunConfig(method="codegraph", lnamd=LNAMDConfig((1, 3)), rscin=RsCINConfig(True, (1, 2)),
                    engine=EngineConfig(subsets=2, seed=5, screening_percent=80.0),
                    graph=GraphConfig(k_fraction=0.3, final_q=0.2, graph_blocks=(3,)))
    est = CoDeGraph.from_config(cfg, progress=True)
    assert est.progress and est.rscin and est.rscin_k_list == (1, 2) and est.final_q == 0.2
    assert est.config == cfg
    assert CoDeGraph(**est.get_params()).config == cfg
    musc = RunConfig(method="musc", msm=MSMConfig(0.2), engine=EngineConfig(precision="bf16"))
    assert MuSc.from_config(musc).config == musc


@pytest.mark.parametrize("method", ["musc", "codegraph"])
def test_fit_predict_on_arrays_equals_the_config_path_bit_for_bit(method):
    x, cls = _tokens()
    cfg = RunConfig(method=method, lnamd=LNAMDConfig((1, 3)))
    ref = score_features(FeatureSet(x, cls, (H, W)), cfg)
    est = METHODS.get(method)(degrees=(1, 3))
    five_d = x.reshape(N, L, H, W, C).numpy()
    for got in (est.fit_predict(five_d), est.fit_predict(x, grid=(H, W)), est.fit_predict(x.numpy(), grid=(H, W),
                                                                                            cls=cls.numpy())):
        assert isinstance(got, ScoreResult) and got.grid == (H, W)
        assert torch.equal(got.patch_scores, ref.patch_scores)
        assert np.array_equal(got.image_scores, ref.image_scores)
        assert np.array_equal(got.raw_image_scores, ref.raw_image_scores)
        assert got.patch_maps.shape == (N, H, W)
        assert torch.equal(got.patch_maps.reshape(N, -1), ref.patch_scores)
        if method == "codegraph":
            assert torch.equal(got.excluded, ref.excluded) and got.excluded_maps.shape == (N, H, W)
        else:
            assert got.excluded is None and got.excluded_maps is None


def test_rscin_with_cls_equals_the_config_path():
    x, cls = _tokens(1)
    cfg = RunConfig(method="musc", lnamd=LNAMDConfig((1,)), rscin=RsCINConfig(enabled=True))
    ref = score_features(FeatureSet(x, cls, (H, W)), cfg)
    got = MuSc(degrees=(1,), rscin=True).fit_predict(x, grid=(H, W), cls=cls)
    assert np.array_equal(got.image_scores, ref.image_scores)
    assert not np.array_equal(got.image_scores, got.raw_image_scores)


@pytest.mark.parametrize("params, needs", [
    ({"rscin": True}, "RsCIN"),
    ({"screening_percent": 50.0}, "screening"),
    ({"subsets": 2}, "subset division"),
])
def test_cls_is_required_only_where_a_setting_reads_it(params, needs):
    x, _ = _tokens()
    for est in (MuSc(degrees=(1,), **params), CoDeGraph(degrees=(1,), **params)):
        with pytest.raises(InputError, match=rf"{needs}.*needs the \[CLS\] vector"):
            est.fit_predict(x, grid=(H, W))


def test_bad_array_inputs_are_clear_errors():
    x, cls = _tokens()
    est = MuSc(degrees=(1,))
    with pytest.raises(InputError, match=r"pass grid=\(h, w\)"):
        est.fit_predict(x)
    with pytest.raises(InputError, match="has 9 patches"):
        est.fit_predict(x, grid=(3, 3))
    with pytest.raises(InputError, match=r"cls must be \(N, C\)"):
        est.fit_predict(x, grid=(H, W), cls=cls[:2])
    with pytest.raises(InputError, match=r"\(N, L, H, W, C\) or \(N, L, M, C\)"):
        est.fit_predict(x[:, 0], grid=(H, W))
    with pytest.raises(InputError, match="NaN"):
        est.fit_predict(torch.full_like(x, float("nan")), grid=(H, W))
    with pytest.raises(ConfigError, match="a FeatureSet carries its own"):
        est.fit_predict(FeatureSet(x, cls, (H, W)), cls=cls)


def test_registry_builds_the_methods_and_checks_run_config():
    assert list_methods()[:2] == ["codegraph", "musc"]
    assert METHODS.get("codegraph") is CoDeGraph and METHODS.get("musc") is MuSc
    built = make_method(RunConfig(method="musc", msm=MSMConfig(0.2)), progress=False)
    assert isinstance(built, MuSc) and built.q == 0.2 and built.progress is False
    assert isinstance(built, Method)
    with pytest.raises(ConfigError, match=r"method must be one of the registered methods \(codegraph, musc"):
        RunConfig(method="winclip_typo")


def test_a_method_of_another_input_kind_is_refused_by_the_batch_runs():
    class TextPrompted:
        input = "images"

    register_method("text_prompted", TextPrompted)
    try:
        with pytest.raises(ConfigError, match="takes 'images' input"):
            make_method(RunConfig(method="text_prompted"))
    finally:
        METHODS.unregister("text_prompted")


class MeanDistance:
    """A user's method: each patch's distance to the batch mean of its position (layer 0)."""

    input = "features"

    def __init__(self, power: float = 1.0) -> None:
        self.power = power

    @classmethod
    def from_config(cls, config: RunConfig) -> "MeanDistance":
        return cls()

    def get_params(self, deep: bool = True) -> dict:
        return {"power": self.power}

    def set_params(self, **params) -> "MeanDistance":
        for k, v in params.items():
            if k != "power":
                raise ConfigError(f"MeanDistance has no parameter {k!r}")
            setattr(self, k, v)
        return self

    def fit_predict(self, features: FeatureSet) -> ScoreResult:
        x = features.layers[:, 0]
        patch = (x - x.mean(dim=0, keepdim=True)).norm(dim=-1) ** self.power
        raw = patch.max(dim=1).values.double().numpy()
        return ScoreResult(patch.float(), raw.copy(), raw, features.grid, diagnostics={"method": "mean_distance"})


@pytest.fixture
def custom_method():
    register_method("mean_distance", MeanDistance)
    try:
        yield MeanDistance
    finally:
        METHODS.unregister("mean_distance")
    assert "mean_distance" not in list_methods()


def test_a_registered_user_method_runs_through_score_features_and_detect(custom_method, tmp_path):
    assert "mean_distance" in list_methods()
    with pytest.raises(ConfigError, match="already registered"):
        register_method("mean_distance", MuSc)
    x, cls = _tokens()
    x[2, 0, 5] += 10.0
    scores = score_features(FeatureSet(x, cls, (H, W)), RunConfig(method="mean_distance"))
    assert scores.diagnostics["method"] == "mean_distance" and scores.image_scores.argmax() == 2
    assert int(scores.patch_scores[2].argmax()) == 5

    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(4):
        img = rng.integers(100, 140, size=(56, 56, 3), dtype=np.uint8)
        if i == 1:
            img[14:42, 14:42] = (220, 20, 20)
        Image.fromarray(img).save(folder / f"part_{i}.png")
    cfg = RunConfig(method="mean_distance", features=FeatureConfig(image_size=56, batch_size=4))
    result = detect(folder, tmp_path / "out", cfg, progress=False, overlays=False, cache=False)
    assert result.scores.diagnostics["method"] == "mean_distance"
    assert result.names[int(np.argmax(result.scores.image_scores))] == "part_1"
    assert (tmp_path / "out" / "run.json").is_file()


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor(image_size=56, batch_size=4, cache=False)


def test_feature_extractor_params_and_inputs(extractor, tmp_path):
    names = [f.name for f in fields(FeatureConfig)]
    assert list(extractor.get_params())[:len(names)] == names
    assert extractor.config == FeatureConfig(image_size=56, batch_size=4)
    assert repr(extractor) == "FeatureExtractor(image_size=56, batch_size=4, cache=False)"
    assert FeatureExtractor.from_config(RunConfig(features=extractor.config)).config == extractor.config
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(3, 56, 56, 3), dtype=np.uint8)
    for i, img in enumerate(images):
        Image.fromarray(img).save(tmp_path / f"{i}.png")
    ref = extractor.transform(images)
    assert ref.layers.shape == (3, 4, 16, 384) and ref.cls.shape == (3, 384) and ref.grid == (4, 4)
    same = [
        extractor(tmp_path),  # a folder
        extractor([tmp_path / f"{i}.png" for i in range(3)]),  # files
        extractor([Image.fromarray(x) for x in images]),  # PIL images
        extractor(list(images.astype(np.float64) / 255.0)),  # floats in [0, 1]
    ]
    for fs in same:
        assert torch.equal(fs.layers, ref.layers) and torch.equal(fs.cls, ref.cls)
    one = extractor(images[0])
    assert torch.equal(one.layers, ref.layers[:1])
    with pytest.raises(InputError, match=r"values in \[0, 1\]"):
        extractor(images.astype(np.float32))
    with pytest.raises(InputError, match=r"\(H, W, 3\)"):
        extractor(images[0, :, :, 0])
    with pytest.raises(ConfigError, match="image_size must be positive"):
        FeatureExtractor(image_size=0).config


@pytest.mark.parametrize("est", [MuSc(degrees=(1, 3)), MuSc(degrees=(1, 3), q=0.1, rscin=True),
                                 CoDeGraph(degrees=(1, 3)), CoDeGraph(degrees=(1, 3), alpha=0.0, k_fraction=0.3)],
                         ids=["musc", "musc_q0.1_rscin", "codegraph", "codegraph_thesis_links"])
def test_rescore_of_a_stored_first_pass_equals_fit_predict_bit_for_bit(est):
    """The benchmarks score one first pass under many settings; it must be the same method."""
    x, cls = _tokens()
    direct = est.fit_predict(x, grid=(H, W), cls=cls)
    warm = est.rescore(est.first_pass(x, grid=(H, W), cls=cls))
    assert torch.equal(direct.patch_scores, warm.patch_scores)
    assert np.array_equal(direct.image_scores, warm.image_scores)
    assert (direct.excluded is None) == (warm.excluded is None)
    if direct.excluded is not None:
        assert torch.equal(direct.excluded, warm.excluded)
        assert direct.diagnostics["subsets"] == warm.diagnostics["subsets"]


def test_first_pass_refuses_subsets_and_rescore_other_degrees():
    x, _ = _tokens()
    with pytest.raises(ConfigError, match="first_pass covers the whole batch"):
        MuSc(subsets=2).first_pass(x, grid=(H, W))
    first = MuSc(degrees=(1,)).first_pass(x, grid=(H, W))
    with pytest.raises(ConfigError, match=r"degrees \(1, 3\) differ from the first pass's \(1,\)"):
        CoDeGraph(degrees=(1, 3)).rescore(first)
