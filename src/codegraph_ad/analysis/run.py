"""``codegraph-ad analyze``: the similarity-scaling and neighbour-burnout analyses of a finished run.

Reads the run's manifest, recomputes (or loads) the per-layer r = 1 minima, measures the
mean log growth curve of normal patches with its power-law fit, the same curves for
consistent and inconsistent anomalous patches when masks exist, the Hill plot of 1/d and
the Beta(alpha, 1) Q-Q of normalised distances, then writes PNG figures and
``analysis.json`` with every fitted number.
"""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from codegraph_ad.analysis import plots
from codegraph_ad.analysis.burnout import burnout_excess, burnout_rank, split_anomalous_patches
from codegraph_ad.analysis.config import AnalysisConfig
from codegraph_ad.analysis.inputs import CACHE_NAME, AnalysisInputs, cache_key, compute_inputs, load_cached, save_cached
from codegraph_ad.analysis.labels import PatchTruth, patch_truth
from codegraph_ad.analysis.repeated import repeated_images
from codegraph_ad.analysis.scaling import fit_power_law, growth_curve, sorted_similarity_vectors
from codegraph_ad.analysis.tail import beta_qq, fit_beta_alpha, hill_estimates, normalised_distances, summarize_hill
from codegraph_ad.config import RunConfig, config_from_dict, config_to_dict
from codegraph_ad.errors import InputError
from codegraph_ad.graph.endurance import reference_rank
from codegraph_ad.io.atomic import write_json
from codegraph_ad.io.run_folder import RunFolder, read_run_folder

ANALYSIS_JSON = "analysis.json"
FIGURES = {"scaling": "scaling.png", "burnout": "burnout.png", "hill": "hill.png", "beta_qq": "beta_qq.png"}


def _json_list(values: np.ndarray) -> list[float | None]:
    """Floats for JSON; NaN and inf become null."""
    return [float(v) if math.isfinite(float(v)) else None for v in np.asarray(values, dtype=np.float64)]


def normal_patches(truth: PatchTruth, run_scores: np.ndarray) -> tuple[np.ndarray, str]:
    """``(N, M)`` bool normal patches and how they were chosen.

    Patches of images labelled normal when labels exist (and some image is normal), else
    every patch below the median of the run's own patch scores.
    """
    n, m = run_scores.shape
    if truth.labels is not None and (truth.labels == 0).any():
        return np.repeat((truth.labels == 0)[:, None], m, axis=1), "patches of images labelled normal"
    return run_scores < np.median(run_scores), "patches below the median patch score of the run"


def _group_curve(dist: np.ndarray, select: np.ndarray, normal_fit: Any) -> dict[str, Any]:
    sorted_d = sorted_similarity_vectors(dist, select)
    ranks, curve = growth_curve(sorted_d)
    out: dict[str, Any] = {"n_patches": int(sorted_d.shape[0]), "mean_tau": _json_list(curve),
                           "burnout_rank": None, "excess": None}
    if normal_fit is not None and sorted_d.shape[0] > 0:
        out["burnout_rank"] = burnout_rank(ranks, curve, normal_fit)
        out["excess"] = _json_list(burnout_excess(ranks, curve, normal_fit))
    return out


def analyze_layer(
    dist: np.ndarray,
    hill_dists: np.ndarray,
    normal: np.ndarray,
    groups: Any,
    k_ref: int,
    config: AnalysisConfig,
    repeated: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every estimate for one layer: scaling fit, burnout curves, Hill summary, Beta fit.

    repeated: ``(N, M)`` bool anomalous patches of the repeated-defect images, or None.
    """
    sorted_normal = sorted_similarity_vectors(dist, normal)
    ranks, curve = growth_curve(sorted_normal)
    rank_max = config.fit_rank_max if config.fit_rank_max is not None else k_ref
    fit = fit_power_law(ranks, curve, config.fit_rank_min, rank_max)
    scaling = {"ranks": ranks.tolist(), "mean_tau": _json_list(curve), "n_patches": int(sorted_normal.shape[0]),
               "fit": fit.to_dict() if fit is not None else None}
    burnout = None
    if groups is not None:
        burnout = {name: _group_curve(dist, getattr(groups, name), fit) for name in ("consistent", "inconsistent")}
        if repeated is not None:
            burnout["repeated"] = _group_curve(dist, repeated, fit)
    hs = summarize_hill(hill_estimates(hill_dists), config.hill_plateau)
    hill = {"k": hs.k.tolist(), "median": _json_list(hs.median), "q25": _json_list(hs.q25), "q75": _json_list(hs.q75),
            "plateau": hs.plateau, "k_lo": hs.k_lo, "k_hi": hs.k_hi, "n_references": int(hill_dists.shape[0])}
    u = normalised_distances(sorted_normal, k_ref) if sorted_normal.shape[0] else np.zeros((0, k_ref - 1))
    alpha = fit_beta_alpha(u)
    beta: dict[str, Any] = {"k": k_ref, "alpha": alpha, "ks": None, "n": 0, "qq": None}
    if alpha is not None:
        qq = beta_qq(u, alpha, config.qq_points)
        beta.update(ks=qq.ks, n=qq.n, qq={"theoretical": qq.theoretical.tolist(), "empirical": qq.empirical.tolist()})
    return {"scaling": scaling, "burnout": burnout, "hill": hill, "beta": beta}


def check_backbone(run: RunFolder, backbone: Any = None) -> None:
    """Refuse to recompute features with another backbone than the one the run used.

    A run made with a caller's own model object cannot be redone from its folder (pass the
    same object as ``backbone``); a checkpoint whose SHA-256 differs from the recorded one is
    refused; another embedded model version is a warning. Folders written before the
    backbone was recorded (0.1.0) are taken at their configured backbone.
    """
    from codegraph_ad.backbones.identity import embedded_model_id, file_sha256

    used = run.backbone
    if used is None or backbone is not None:
        return
    where = run.root / "run.json"
    if used.source == "custom object":
        raise InputError(f"{where}: the run used a custom backbone object ({used.model}); its features cannot "
                         f"be recomputed from the folder. Pass the same model as analyze_run(backbone=...)")
    features = run.config.get("features", {})
    if used.source == "registered":
        from codegraph_ad.registry import BACKBONES

        if used.name not in BACKBONES:
            raise InputError(f"{where}: the run used the registered backbone {used.name!r} ({used.model}), "
                             f"which is not registered here; import the module that registers it first "
                             f"(for the command line: CODEGRAPH_AD_PLUGINS=<module>)")
    if used.source == "checkpoint":
        checkpoint = features.get("checkpoint")
        if checkpoint is None or not Path(checkpoint).expanduser().is_file():
            raise InputError(f"{where}: the run used checkpoint {checkpoint!r}, which is not found here")
        digest = file_sha256(checkpoint)
        if digest != used.checkpoint_sha256:
            raise InputError(f"{checkpoint}: SHA-256 {digest[:12]}... differs from the one the run used "
                             f"({str(used.checkpoint_sha256)[:12]}..., recorded in {where}); refusing to recompute "
                             f"features with other weights")
    elif used.source == "embedded" and used.model is not None:
        here = embedded_model_id()
        if here != used.model:
            warnings.warn(f"{where}: the run used the embedded model {used.model}, this installation has {here}; "
                          f"recomputed features may differ", stacklevel=3)


def _musc_reusable(run_config: RunConfig) -> bool:
    """A MuSc run without subsets or screening already holds the MuSc patch scores."""
    e = run_config.engine
    return run_config.method == "musc" and e.subsets == 1 and e.screening_percent >= 100.0


def analyze_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    config: AnalysisConfig = AnalysisConfig(),
    backbone: Any = None,
    progress: bool = True,
    figures: bool = True,
) -> dict[str, Any]:
    """Analyse a finished run folder; returns what ``analysis.json`` holds.

    out_dir defaults to ``<run_dir>/analysis``. The recomputed inputs are cached there.
    figures=False writes only the JSON (drawing is most of the time once inputs are cached).
    """
    from codegraph_ad.api import features_for_batch
    from codegraph_ad.io.batch import load_batch

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir is not None else run_dir / "analysis"
    timings: dict[str, float] = {}
    run = read_run_folder(run_dir)
    check_backbone(run, backbone)
    rows = run.rows
    run_config = config_from_dict(RunConfig, run.config)
    paths = run.paths
    sizes = run.original_sizes
    if len(run.grid) != 2:
        raise InputError(f"{run_dir / 'run.json'}: grid {list(run.grid)} is not an image run's patch grid")
    grid = (int(run.grid[0]), int(run.grid[1]))
    run_scores = run.require_patch_scores()
    truth = patch_truth(rows, paths, sizes, grid, config.mask_fraction)
    repeated, repeated_source = repeated_images(paths, config.repeated_images)
    normal, normal_rule = normal_patches(truth, run_scores)
    need_musc = truth.anomalous is not None and not _musc_reusable(run_config)
    key = cache_key([str(p) for p in paths], run_config, config, normal, need_musc)
    t0 = time.perf_counter()
    inputs = load_cached(out / CACHE_NAME, key)
    timings["cache_hit"] = float(inputs is not None)
    if inputs is None:
        batch = load_batch(paths, run_config.features.image_size, None, "stop", progress)
        features = features_for_batch(batch, run_config, backbone, progress)
        if features.grid != grid:
            raise InputError(f"{run_dir}: recomputed grid {features.grid} differs from run.json grid {grid}")
        inputs = compute_inputs(features, run_config, config, normal, need_musc, progress)
        save_cached(out / CACHE_NAME, key, inputs)
    timings["inputs_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result = analyze_inputs(inputs, truth, normal, run_config, config, run_scores, repeated)
    if result["groups"] is not None and "repeated" in result["groups"]:
        result["groups"]["repeated"].update(source=repeated_source,
                                            images=[nm for nm, r in zip(run.names, repeated) if r])
    result.update(run_dir=str(run_dir), names=run.names, grid=list(grid), normal_patches=normal_rule,
                  n_normal_patches=int(normal.sum()), run_config=config_to_dict(run_config),
                  analysis_config=config_to_dict(config))
    timings["estimators_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    result["figures"] = write_figures(result["layers"], out) if figures else {}
    timings["figures_s"] = time.perf_counter() - t0
    result["timings"] = timings
    write_json(out / ANALYSIS_JSON, result)
    return result


def analyze_inputs(
    inputs: AnalysisInputs,
    truth: PatchTruth,
    normal: np.ndarray,
    run_config: RunConfig,
    config: AnalysisConfig,
    run_scores: np.ndarray,
    repeated_members: np.ndarray | None = None,
) -> dict[str, Any]:
    """The estimates of every layer from precomputed inputs (no backbone, no files).

    repeated_members: ``(N,)`` bool images carrying one repeated defect (their anomalous
    patches become a third burnout group), or None.
    """
    n = inputs.minima.shape[1]
    groups = None
    repeated = None
    group_info: dict[str, Any] | None = None
    if truth.anomalous is not None:
        musc = inputs.musc_scores if inputs.musc_scores is not None else run_scores
        groups = split_anomalous_patches(truth.anomalous, normal, musc, config.consistent_percentile)
        group_info = {"threshold": groups.threshold, "percentile": groups.percentile,
                      "n_anomalous": int(truth.anomalous.sum()), "n_consistent": int(groups.consistent.sum()),
                      "n_inconsistent": int(groups.inconsistent.sum())}
        if repeated_members is not None:
            repeated = truth.anomalous & np.asarray(repeated_members, dtype=bool)[:, None]
            group_info["repeated"] = {"n_images": int(np.sum(repeated_members)), "n_patches": int(repeated.sum()),
                                      "n_consistent": int((repeated & groups.consistent).sum())}
    k_ref = reference_rank(n, run_config.graph.k_fraction)
    layers = []
    for li, block in enumerate(run_config.features.layers):
        layer = analyze_layer(inputs.minima[li], inputs.hill_dists[li], normal, groups, k_ref, config, repeated)
        layers.append({"block": int(block), **layer})
    return {"n_images": int(n), "labels": truth.labels is not None, "masks": truth.anomalous is not None,
            "groups": group_info, "layers": layers}


def write_figures(layers: list[dict[str, Any]], out: Path) -> dict[str, str]:
    """PNG figures into ``out``; returns {figure: file name}."""
    written = {
        "scaling": plots.plot_scaling(layers, out / FIGURES["scaling"]),
        "hill": plots.plot_hill(layers, out / FIGURES["hill"]),
        "beta_qq": plots.plot_beta_qq(layers, out / FIGURES["beta_qq"]),
    }
    if all(layer["burnout"] is not None for layer in layers):
        written["burnout"] = plots.plot_burnout(layers, out / FIGURES["burnout"])
    return {k: Path(v).name for k, v in written.items()}
