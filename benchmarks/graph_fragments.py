"""Where a large repeated group's images go: its communities, their links, an absorption what-if.

    python benchmarks/graph_fragments.py --category mpdd --size 224 --sources abc --cells c_35,a_5

Reads the matrix's stored first pass (benchmarks/codegraph_matrix.py), runs CoDeGraph at the
defaults on each cell and records, from its diagnostics: every community holding an image of
the repeated group(s) (size, group images, density, outlier or not), every community's size
and density with the quartiles and fence they make, the CPM resolution, the link weight between those communities over the image pairs between them (what
CPM weighs against the resolution), and what an absorption step would flag: a community joins
the outlier set when most of its external link weight goes to it (repeated until nothing
changes). Writes benchmarks/results/graph_fragments_<category>_<size>.json.
"""

from __future__ import annotations

import json

from codegraph_matrix import RESULTS, stored_cells, stored_cells_args

from codegraph_ad.io.atomic import write_json
from codegraph_ad.methods import CoDeGraph


def cross_weights(diag: dict) -> dict[int, dict[int, float]]:
    """The link weight from every community to each of the others it is linked to."""
    comm_of = {i: c["id"] for c in diag["communities"] for i in c["images"]}
    between: dict[int, dict[int, float]] = {c["id"]: {} for c in diag["communities"]}
    for e in diag["edges"]:
        x, y = comm_of[e["source"]], comm_of[e["target"]]
        if x != y:
            between[x][y] = between[x].get(y, 0.0) + e["weight"]
            between[y][x] = between[y].get(x, 0.0) + e["weight"]
    return between


def absorbed(diag: dict, between: dict[int, dict[int, float]]) -> set[int]:
    """Communities flagged once every community sending most of its external weight to the
    flagged ones joins them, until nothing changes."""
    flagged = {c["id"] for c in diag["communities"] if c["outlier"]}
    changed = True
    while changed:
        changed = False
        for c, out in between.items():
            if c not in flagged and out and sum(w for y, w in out.items() if y in flagged) > sum(out.values()) / 2:
                flagged.add(c)
                changed = True
    return flagged


def fragments(cell) -> dict:
    diag = CoDeGraph.from_config(cell.cfg).rescore(cell.first).diagnostics["subsets"][0]
    group = {i for idx in cell.groups.values() for i in idx}
    members = {c["id"]: set(c["images"]) for c in diag["communities"]}
    between = cross_weights(diag)
    held = [c for c in diag["communities"] if members[c["id"]] & group]
    pieces = [{"id": c["id"], "size": len(c["images"]), "group_images": len(members[c["id"]] & group),
               "density": round(c["density"], 2), "outlier": c["outlier"]} for c in held]
    held_ids = sorted(c["id"] for c in held)
    links = []
    for x in held_ids:
        for y in held_ids:
            if x < y and y in between[x]:
                pairs = len(members[x]) * len(members[y])
                links.append({"between": [x, y], "weight": between[x][y], "pairs": pairs,
                              "per_pair": round(between[x][y] / pairs, 3)})
    outliers = set().union(*(members[c["id"]] for c in diag["communities"] if c["outlier"]))
    after = set().union(*(members[c] for c in absorbed(diag, between)))
    every = sorted(([len(c["images"]), round(c["density"], 2), c["outlier"]] for c in diag["communities"]),
                   key=lambda x: -x[1])
    return {"n_images": len(cell.index), "group_images": len(group), "quartiles": diag["quartiles"],
            "fence": diag["quartiles"]["fence"], "communities_size_density_outlier": every,
            "resolution": diag["resolution"], "n_communities": len(diag["communities"]),
            "group_communities": sorted(pieces, key=lambda p: -p["group_images"]), "links_between_them": links,
            "flagged": {"group": len(outliers & group), "others": len(outliers - group)},
            "absorption_what_if": {"group": len(after & group), "others": len(after - group)}}


def main() -> None:
    a = stored_cells_args(__doc__.splitlines()[0], "c_35")
    out = {"benchmark": "graph_fragments", "category": a.category, "size": a.size, "sources": a.sources, "cells": {}}
    path = RESULTS / f"graph_fragments_{a.category}_{a.size}.json"
    for cell in stored_cells(a):
        out["cells"][cell.name] = fragments(cell)
        r = out["cells"][cell.name]
        print(cell.name, json.dumps({k: r[k] for k in ("group_images", "flagged", "absorption_what_if")}), flush=True)
        write_json(path, out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
