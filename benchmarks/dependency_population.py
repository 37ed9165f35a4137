"""Who sets CoDeGraph's dependency threshold: the ratios of the repeated group's patches
against those of the patches outside the outlier union, on one matrix cell.

    python benchmarks/dependency_population.py --category mpdd --size 224 --sources a --cells a_35

Reads the matrix's stored first pass (benchmarks/codegraph_matrix.py), runs the graph stages
at the defaults and reports, for the joint filter record: the threshold, the ratio
quantiles of the group's defect and normal patches, of defect / normal patches outside the
union, what lies above the threshold, and the threshold each population would give with
and without the look-alike fence. Writes results/dependency_population_<category>_<size>_<cell>.json.
"""

from __future__ import annotations

import numpy as np
from common import RESULTS

import codegraph_matrix as cm
from codegraph_ad.config import GraphConfig
from codegraph_ad.graph.filtering import look_alike_images
from codegraph_ad.graph.pipeline import run_graph_stages
from codegraph_ad.io.atomic import write_json
from codegraph_ad.methods.codegraph import graph_inputs, refined_score_fn


def quantiles(a: np.ndarray) -> dict[str, float] | None:
    if a.size == 0:
        return None
    return {f"p{p}": round(float(np.percentile(a, p)), 4) for p in (10, 50, 90, 99, 99.9)}


def main() -> None:
    a = cm.stored_cells_args(__doc__.split("\n\n")[0], cells="a_35")
    cell = next(cm.stored_cells(a))
    fp, graph = cell.first, GraphConfig(defect_gate_percentile=None)  # the population without the gate, as stored
    layers = graph_inputs(graph, fp.degrees, fp.features.layers.shape[1], tuple(cell.cfg.features.layers))
    mins = [fp.minima[(li, graph.graph_degree)].dist.cpu().numpy() for li in layers]
    res = run_graph_stages(mins, graph, refined_score_fn(fp, graph.final_q))
    rec = res.filtering.records[0]
    delta = rec.dependency.astype(np.float64)
    n, m = delta.shape
    inside = np.zeros(n, dtype=bool)
    inside[np.unique(np.concatenate(res.outlier_communities))] = True
    defect = cell.fractions >= 0.5
    labels = cell.labels
    group = np.zeros(n, dtype=bool)
    for idx in cell.groups.values():
        group[idx] = True
    outside = ~inside
    above = outside[:, None] & (delta > rec.threshold)
    out = {
        "cell": cell.name, "category": a.category, "size": a.size, "threshold": round(rec.threshold, 4),
        "union_images": int(inside.sum()), "group_images": int(group.sum()),
        "ratios": {
            "group_defect": quantiles(delta[group][defect[group]]),
            "group_normal": quantiles(delta[group][~defect[group]]),
            "outside_defect": quantiles(delta[outside[:, None] & defect]),
            "outside_normal_good_images": quantiles(delta[(outside & (labels == 0))[:, None] & ~defect]),
            "outside_normal_defective_images": quantiles(delta[(outside & (labels == 1))[:, None] & ~defect]),
        },
        "outside_above_threshold": {"patches": int(above.sum()), "defect_patches": int((above & defect).sum()),
                                    "in_good_images": int((above & (labels == 0)[:, None]).sum())},
        "group_defect_excluded_pct": round(100 * float((delta[group][defect[group]] > rec.threshold).mean()), 1),
        "look_alike_fence": {},
    }
    for kappa in (1.5, 3.0):
        look = look_alike_images(delta, outside, np.ones((n, m), dtype=bool), kappa)
        judges = outside & ~look
        t = float(np.percentile(delta[judges], graph.dependency_percentile))
        out["look_alike_fence"][str(kappa)] = {
            "look_alike_images": int(look.sum()), "of_them_defective": int((labels[look] == 1).sum()),
            "threshold": round(t, 4),
            "group_defect_excluded_pct": round(100 * float((delta[group][defect[group]] > t).mean()), 1),
            "group_normal_excluded_pct": round(100 * float((delta[group][~defect[group]] > t).mean()), 1)}
    path = RESULTS / f"dependency_population_{a.category}_{a.size}_{cell.name}.json"
    write_json(path, out)
    print(out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
