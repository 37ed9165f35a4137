"""The per-image decision over the CoDeGraph matrix's batches: one rule for many batches.

    python benchmarks/decisions_matrix.py --category bottle --size 224
    python benchmarks/decisions_matrix.py --category mpdd --size 224

``decisions.py`` measures the flags on six batches; a rule that fits those can still fail on
a batch of another shape (session 28: bottle with two repeated defects, 18% good images,
where the mixture fitted one Gaussian and flagged nothing). This runs the decision on every
cell of ``codegraph_matrix.py`` (clean, 5-35% copies of three sources, two groups at once):
CoDeGraph at the defaults rescored from the matrix's stored first pass (computed if
missing), then both rules at every rate of ``decisions.py`` from the cell's image scores.
The image scores are kept in the results file, so a new rule is judged by
``--from-results`` in seconds, without rescoring. Acceptance as in ``decisions.py``.

The decision also labels CoDeGraph's outlier communities (``graph.groups.is_look_alike``: a
repeated defect when at least half of a community's images are flagged, else a look-alike
group), so each cell's outlier communities are kept with their members, and the labels at
the default rule are checked against the truth: a community most of whose images are
anomalous (a SynCA source and its copies, or originals sharing a defect type, as bottle's
five contamination images) should be a ``repeated_defect``, one of mostly good images a
``look_alike``.
Writes benchmarks/results/decisions_matrix_<category>_<size>[_<tag>].json.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from codegraph_matrix import SuperBatch, add_matrix_options, first_pass_for
from common import RESULTS, run_record, write_result
from decisions import RATES, RULES, measure

from codegraph_ad.config import DecisionConfig, EngineConfig, FeatureConfig, RunConfig
from codegraph_ad.decision import decide
from codegraph_ad.graph.groups import LOOK_ALIKE, REPEATED_DEFECT, is_look_alike
from codegraph_ad.methods import CoDeGraph


def cell_scores(category: str, size: int, sources: str, precision: str, wanted: list[str]) -> dict[str, dict]:
    """name -> {"scores", "labels", "repeated", "communities"}: CoDeGraph's image scores of
    every matrix cell, the repeated images (sources + copies) and the outlier communities."""
    cfg = RunConfig(features=FeatureConfig(image_size=size), engine=EngineConfig(precision=precision))
    sb = SuperBatch(category, sources)
    first, _, _ = first_pass_for(sb, category, cfg)
    out = {}
    for name, spec in sb.cells().items():
        if wanted and name not in wanted:
            continue
        result = CoDeGraph.from_config(cfg).rescore(first.subset(spec["index"]))
        pos = {g: i for i, g in enumerate(spec["index"])}
        communities = [c["images"] for c in result.diagnostics["subsets"][0]["communities"] if c["outlier"]]
        out[name] = {"scores": np.asarray(result.image_scores, dtype=np.float64).tolist(),
                     "labels": [int(sb.samples[i].label) for i in spec["index"]],
                     "repeated": sorted(pos[i] for idx in spec["groups"].values() for i in idx),
                     "communities": [[int(i) for i in c] for c in communities]}
        print(name, flush=True)
    return out


def group_labels(cell: dict, config: DecisionConfig) -> list[dict]:
    """Each outlier community's label under ``config`` against what it is made of."""
    flags = decide(np.asarray(cell["scores"]), config).anomalous
    repeated = set(cell["repeated"])
    labels = np.asarray(cell["labels"])
    out = []
    for members in cell["communities"]:
        n_flagged = int(flags[members].sum())
        look_alike = is_look_alike(n_flagged, len(members), bool(flags.any()), config.group_defect_share)
        n_anomalous = int(labels[members].sum())
        out.append({"size": len(members), "repeated_images": len(repeated & set(members)),
                    "anomalous_images": n_anomalous, "flagged": n_flagged,
                    "kind": LOOK_ALIKE if look_alike else REPEATED_DEFECT,
                    "truth": REPEATED_DEFECT if 2 * n_anomalous >= len(members) else LOOK_ALIKE})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_matrix_options(ap)
    ap.add_argument("--cells", default="", help="comma-separated cell names (default: all)")
    ap.add_argument("--from-results", action="store_true",
                    help="reuse the image scores of the existing results file (judge a changed rule)")
    ap.add_argument("--tag", default="")
    a = ap.parse_args()
    stem = f"decisions_matrix_{a.category}_{a.size}" + (f"_{a.precision}" if a.precision != "fp32" else "")
    if a.from_results:
        cells = json.loads((RESULTS / f"{stem}{'_' + a.tag if a.tag else ''}.json").read_text())["cells"]
    else:
        cells = cell_scores(a.category, a.size, a.sources, a.precision, [c for c in a.cells.split(",") if c])
    results = []
    for name, cell in cells.items():
        scores, labels = np.asarray(cell["scores"]), np.asarray(cell["labels"])
        for rule in RULES:
            for rate in RATES:
                results.append({"batch": name, **measure(scores, labels, rule, rate)})
    default = DecisionConfig()
    groups = {name: group_labels(cell, default) for name, cell in cells.items() if "communities" in cell}
    write_result(stem, a.tag, {"category": a.category, "image_size": a.size, "sources": a.sources,
                               "default": {"rule": default.rule, "false_alarm_rate": default.false_alarm_rate},
                               "cells": cells, "results": results, "group_labels": groups,
                               **run_record(RunConfig(features=FeatureConfig(image_size=a.size),
                                                      engine=EngineConfig(precision=a.precision)))})
    at_default = [r for r in results if r["rule"] == default.rule and r["false_alarm_rate"] == default.false_alarm_rate]
    for r in at_default:
        print(f"{r['batch']:8s} flagged {r['flagged']:3d}  false alarms {r['false_alarms']:2d} of {r['n_normal']}  "
              f"recall {100 * r['recall']:5.1f}%  {'accepted' if r['accepted'] else 'NOT accepted'}")
    print(f"accepted at the default: {sum(r['accepted'] for r in at_default)} of {len(at_default)}; "
          f"mean recall {100 * np.mean([r['recall'] for r in at_default]):.1f}%")
    for name, labels in groups.items():
        for g in labels:
            wrong = "" if g["kind"] == g["truth"] else "  <- mislabelled"
            print(f"{name:8s} community of {g['size']:3d} ({g['repeated_images']} copies, {g['anomalous_images']} "
                  f"anomalous), {g['flagged']} flagged: {g['kind']}{wrong}")
    n_groups = sum(len(v) for v in groups.values())
    n_right = sum(g["kind"] == g["truth"] for v in groups.values() for g in v)
    print(f"group labels right: {n_right} of {n_groups}")


if __name__ == "__main__":
    main()
