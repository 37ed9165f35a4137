"""GraphConfig.graph_blocks: which blocks' minima feed the graph stages (CoDeGraph method)."""

import pytest
import torch

from codegraph_ad.config import ConfigError, GraphConfig, LNAMDConfig, RunConfig
from codegraph_ad.features.extract import FeatureSet
from codegraph_ad.methods.codegraph import CoDeGraph

from .synthetic import toy_graph

PLANTED = [1, 4, 7, 10, 13]
POSITIONS = [5, 6, 9, 10]


def _two_layer_batch(n: int = 16, grid: tuple[int, int] = (4, 4), c: int = 16) -> FeatureSet:
    """Layer 0 holds a repeated odd 2 x 2 region (POSITIONS) in PLANTED; layer 1 holds none."""
    m = grid[0] * grid[1]
    g = torch.Generator().manual_seed(0)
    proto = torch.randn(m, c, generator=g)
    layers = proto[None, None] + 0.3 * torch.randn(n, 2, m, c, generator=g)
    odd = 3 * torch.randn(len(POSITIONS), c, generator=g)
    for q in PLANTED:
        layers[q, 0, POSITIONS] = odd + 0.01 * torch.randn(len(POSITIONS), c, generator=g)
    return FeatureSet(layers, torch.randn(n, c, generator=g), grid)


BLOCKS = (6, 9)  # the block numbers of the two layers of _two_layer_batch


def _run(graph: GraphConfig, feats: FeatureSet, blocks: tuple[int, ...] | None = BLOCKS):
    method = CoDeGraph.from_config(RunConfig(lnamd=LNAMDConfig(degrees=(1,)), graph=graph), progress=False,
                                   blocks=blocks)
    return method.fit_predict(feats)


def _outliers(result) -> list[list[int]]:
    comms = result.diagnostics["subsets"][0]["communities"]
    return [sorted(c["images"]) for c in comms if c["outlier"]]


def test_the_layer_holding_the_repeat_finds_it_and_the_other_does_not():
    feats = _two_layer_batch()
    base = toy_graph(kappa=1.5, target_coverage=0.99)
    found = _run(GraphConfig(**{**base.__dict__, "graph_blocks": (6,)}), feats)
    assert _outliers(found) == [PLANTED]
    assert found.excluded[PLANTED][:, POSITIONS].all()
    blind = _run(GraphConfig(**{**base.__dict__, "graph_blocks": (9,)}), feats)
    assert PLANTED not in _outliers(blind)
    assert not blind.excluded[PLANTED][:, POSITIONS].any()


def test_graph_layers_are_checked(monkeypatch):
    import codegraph_ad.methods.codegraph as cg

    def no_first_pass(*args, **kwargs):
        raise AssertionError("a bad graph setting must fail before the first pass is computed")

    monkeypatch.setattr(cg, "compute_first_pass", no_first_pass)
    with pytest.raises(ValueError, match="not among the LNAMD degrees"):
        _run(GraphConfig(graph_degree=3), _two_layer_batch())
    with pytest.raises(ConfigError):
        GraphConfig(graph_blocks=())
    with pytest.raises(ConfigError):
        GraphConfig(graph_blocks=(9, 9))
    with pytest.raises(ConfigError):
        GraphConfig(graph_blocks=(0,))  # block numbers are 1-based
    with pytest.raises(ConfigError, match="not among the extracted layers"):
        _run(GraphConfig(graph_blocks=(12,)), _two_layer_batch())
    with pytest.raises(ConfigError, match="need the block numbers"):
        _run(GraphConfig(graph_blocks=(6,)), _two_layer_batch(), blocks=None)


def test_cli_option_reaches_the_config():
    import argparse

    from codegraph_ad.options import add_run_options, config_from_args

    p = argparse.ArgumentParser()
    add_run_options(p)
    assert config_from_args(p.parse_args(["--out", "o"])).graph.graph_blocks is None
    graph = config_from_args(p.parse_args(["--out", "o", "--graph-blocks", "6,9", "--graph-degree", "3"])).graph
    assert graph.graph_blocks == (6, 9) and graph.graph_degree == 3
    with pytest.raises(ConfigError, match="not among the extracted layers"):
        config_from_args(p.parse_args(["--out", "o", "--graph-blocks", "7"]))


def test_old_run_json_graph_layers_become_blocks():
    from codegraph_ad.config import RunConfig, config_from_dict

    run = config_from_dict(RunConfig, {"features": {"layers": [3, 6, 9, 12]}, "graph": {"graph_layers": [2, 3]}})
    assert run.graph.graph_blocks == (9, 12)
    assert config_from_dict(RunConfig, {"graph": {"graph_layers": None}}).graph.graph_blocks is None
    with pytest.raises(ConfigError):
        config_from_dict(RunConfig, {"features": {"layers": [3, 6]}, "graph": {"graph_layers": [2]}})


def test_new_graph_options_reach_the_config():
    import argparse

    from codegraph_ad.options import add_run_options, config_from_args

    p = argparse.ArgumentParser()
    add_run_options(p)
    default = config_from_args(p.parse_args(["--out", "o"])).graph
    assert default == GraphConfig()
    graph = config_from_args(p.parse_args(["--out", "o", "--community-density", "per_pair",
                                           "--resolution-percentile", "10", "--no-joint-filtering"])).graph
    assert (graph.community_density, graph.resolution_percentile, graph.joint_filtering) == ("per_pair", 10.0, False)
    graph = config_from_args(p.parse_args(["--out", "o", "--joint-filtering"])).graph
    assert graph.joint_filtering is True
