"""What the graph stages did, as JSON and pictures, so a run can be checked by eye.

The quartiles come with every summary because with few communities the Tukey fence is
unstable (SPEC section 6.3): a reader must be able to see why a community was or was not
flagged.
"""

from __future__ import annotations

import io
import os
import random
from pathlib import Path
from typing import Any, Sequence

import igraph
import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from codegraph_ad.graph.communities import Weights, as_sparse, upper_edges
from codegraph_ad.graph.groups import json_number as _num
from codegraph_ad.graph.pipeline import GraphResult
from codegraph_ad.io.atomic import atomic_write, write_bytes




def _names(n: int, names: Sequence[str] | None) -> list[str]:
    if names is None:
        return [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"names has {len(names)} entries for {n} images")
    return [str(s) for s in names]


def edge_list(weights: Weights) -> list[dict[str, Any]]:
    """Positive edges (i < j) with their weights, heaviest first (ties row-major).

    weights: (N, N), sparse (``LinkSelection.weights``) or dense."""
    iu, ju, w = upper_edges(weights)
    keep = np.argsort(-w, kind="stable")
    return [{"source": int(a), "target": int(b), "weight": float(x)}
            for a, b, x in zip(iu[keep].tolist(), ju[keep].tolist(), w[keep].tolist())]


def summarize(result: GraphResult, names: Sequence[str] | None = None) -> dict[str, Any]:
    """JSON-able record of links, graph, communities, outliers and exclusions.

    Non-finite numbers (a fence of inf when no community has two images, the threshold of
    a skipped community) are written as null.
    """
    links, comms, filt = result.links, result.communities, result.filtering
    n, m = filt.excluded.shape
    label = _names(n, names)
    outlier_set = set(comms.outliers)
    per_image = filt.excluded.sum(axis=1)
    return {
        "n_images": int(n),
        "n_patches": int(m),
        "reference_rank_k": int(result.k),
        "links": {
            "n_links": links.n_links,
            "n_candidates": links.n_candidates,
            "links_per_batch": links.links_per_batch,
            "coverage": links.coverage,
            "reached_target": links.reached_target,
            "zeta_cutoff": _num(links.zeta_cutoff),
            "coverage_history": [float(c) for c in links.coverage_history],
        },
        "edges": edge_list(links.weights),
        "resolution": comms.resolution,
        "communities": [
            {
                "id": c,
                "images": members.tolist(),
                "names": [label[i] for i in members],
                "size": int(comms.sizes[c]),
                "density": float(comms.densities[c]),
                "eligible": bool(comms.eligible[c]),
                "outlier": c in outlier_set,
            }
            for c, members in enumerate(comms.communities)
        ],
        "quartiles": {"q1": comms.q1, "q3": comms.q3, "iqr": comms.iqr, "fence": _num(comms.fence),
                      "min_community_size": comms.min_size},
        "outlier_communities": list(comms.outliers),
        "filtering": [
            {
                "community": c,
                "images": rec.images.tolist(),
                "threshold": _num(rec.threshold),
                "n_excluded": rec.n_excluded,
                "excluded_per_image": rec.excluded_per_image.tolist(),
                "skipped": rec.skipped,
            }
            for c, rec in zip(comms.outliers, filt.records)
        ],
        "excluded_per_image": {label[i]: int(per_image[i]) for i in range(n)},
        "exclusion_rate": float(filt.excluded.mean()) if filt.excluded.size else 0.0,
    }


def _png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    return buf.getvalue()


def graph_layout(weights: Weights, seed: int = 0) -> np.ndarray:
    """(N, 2) Fruchterman-Reingold positions; heavier edges pull harder.

    igraph's ``seed`` is a start layout, not an RNG seed, and the algorithm also draws from
    igraph's generator: both are seeded (the generator is put back to Python's ``random``,
    igraph's default, afterwards) so the picture is identical between runs.
    """
    weights = as_sparse(weights)
    n = weights.shape[0]
    iu, ju, w = upper_edges(weights)
    start = np.random.default_rng(seed).uniform(-1.0, 1.0, size=(n, 2))
    if not w.size:
        return start
    g = igraph.Graph(n=n, edges=np.column_stack([iu, ju]).tolist(), directed=False)
    igraph.set_random_number_generator(random.Random(seed))
    try:
        layout = g.layout_fruchterman_reingold(
            weights=w.astype(float).tolist(), seed=start.tolist(), niter=500
        )
    finally:
        igraph.set_random_number_generator(random)
    return np.asarray(layout.coords, dtype=np.float64)


def plot_graph(
    weights: Weights,
    membership: np.ndarray,
    outliers: Sequence[int],
    names: Sequence[str] | None,
    path: str | os.PathLike[str],
    seed: int = 0,
) -> Path:
    """Draw the anomaly similarity graph to a PNG: nodes coloured by community, outlier
    communities in red, edge width and darkness by weight."""
    weights = as_sparse(weights)
    membership = np.asarray(membership)
    n = weights.shape[0]
    label = _names(n, names)
    pos = graph_layout(weights, seed)
    fig = Figure(figsize=(8, 8), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    iu, ju, w = upper_edges(weights)
    wmax = float(w.max()) if w.size else 1.0
    for e in np.argsort(w, kind="stable"):  # heavy edges drawn last, on top
        a, b = iu[e], ju[e]
        frac = w[e] / wmax
        ax.plot(
            pos[[a, b], 0], pos[[a, b], 1], color=(0.2, 0.2, 0.2), alpha=0.15 + 0.6 * frac,
            linewidth=0.5 + 4.0 * frac, zorder=1,
        )
    outlier_set = set(int(c) for c in outliers)
    tab20 = colormaps["tab20"]
    palette = [tab20(i) for i in range(20) if i not in (6, 7)]  # no red but the outliers'
    colours = [
        (0.85, 0.1, 0.1, 1.0) if int(c) in outlier_set else palette[int(c) % len(palette)]
        for c in membership
    ]
    is_out = np.array([int(c) in outlier_set for c in membership], dtype=bool)
    ax.scatter(pos[:, 0], pos[:, 1], s=np.where(is_out, 160, 90), c=colours,
               edgecolors="black", linewidths=0.6, zorder=2)
    for i in range(n):
        ax.annotate(label[i], pos[i], fontsize=6, xytext=(4, 4), textcoords="offset points", zorder=3)
    ax.set_title(f"anomaly similarity graph: {n} images, {len(outlier_set)} outlier communities (red)")
    ax.set_axis_off()
    return write_bytes(path, _png_bytes(fig))


def plot_excluded_patches(
    image_rgb: np.ndarray, excluded_grid: np.ndarray, path: str | os.PathLike[str], alpha: float = 0.5
) -> Path:
    """PNG of ``image_rgb: (H, W, 3)`` with the excluded cells of the ``(h, w)`` patch grid
    tinted red (nearest-neighbour upsampling: a patch is a block, not a blob)."""
    img = np.asarray(image_rgb)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image_rgb must be (H, W, 3), got shape {img.shape}")
    if img.dtype != np.uint8:
        scale = 255.0 if float(np.nanmax(img)) <= 1.0 else 1.0
        img = np.clip(img.astype(np.float64) * scale, 0, 255).astype(np.uint8)
    grid = np.asarray(excluded_grid, dtype=bool)
    if grid.ndim != 2:
        raise ValueError(f"excluded_grid must be (h, w), got shape {grid.shape}")
    h, w = img.shape[:2]
    up = Image.fromarray(grid.astype(np.uint8) * 255).resize((w, h), Image.NEAREST)
    sel = (np.asarray(up) > 127)[..., None]
    red = np.array([230, 20, 20], dtype=np.float64)
    out = np.where(sel, (1 - alpha) * img + alpha * red, img).astype(np.uint8)
    pil = Image.fromarray(out)
    return atomic_write(path, lambda fh: pil.save(fh, format="PNG"))

