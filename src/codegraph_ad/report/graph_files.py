"""CoDeGraph's pictures as files beside a run: the graph, and the excluded patches per image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

from codegraph_ad.io.images import load_image_rgb


def subset_graph(diag: dict[str, Any]) -> tuple[sparse.csr_array, np.ndarray, list[int]]:
    """Sparse weight matrix, membership and outlier ids of one subset, from its JSON diagnostics."""
    from codegraph_ad.report.graph_svg import weights_from_edges

    n = int(diag["n_images"])
    weights = weights_from_edges(n, diag["edges"])
    membership = np.zeros(n, dtype=int)
    for c in diag["communities"]:
        membership[np.asarray(c["images"], dtype=int)] = c["id"]
    return weights, membership, [int(c) for c in diag["outlier_communities"]]


def write_graph_files(out: Path, names: list[str], paths: list[Path], excluded: np.ndarray,
                      grid: tuple[int, int], diagnostics: dict[str, Any]) -> list[Path]:
    """``graph.png`` (``graph_<k>.png`` per subset) and ``excluded/<name>.png`` for every
    image that lost patches."""
    from codegraph_ad.graph.diagnostics import plot_excluded_patches, plot_graph

    written = []
    subsets = diagnostics.get("subsets", [])
    for k, diag in enumerate(subsets):
        weights, membership, outliers = subset_graph(diag)
        images = diag.get("images", list(range(len(names))))
        name = "graph.png" if len(subsets) == 1 else f"graph_{k}.png"
        written.append(plot_graph(weights, membership, outliers, [names[i] for i in images], out / name))
    for i in np.flatnonzero(excluded.reshape(len(names), -1).any(axis=1)):
        grid_mask = excluded[i].reshape(grid)
        written.append(plot_excluded_patches(load_image_rgb(paths[i]), grid_mask, out / "excluded" / f"{names[i]}.png"))
    return written
