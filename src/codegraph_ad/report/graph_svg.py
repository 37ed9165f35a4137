"""The anomaly similarity graph of a CoDeGraph run as inline SVG, from its JSON diagnostics.

Drawn in Python (no JavaScript library, no network): nodes coloured by community,
outlier communities in red with a thick ring, edges darker and wider with weight. Each node
carries ``data-open`` so a click opens that image's detail view.
"""

from __future__ import annotations

import html
from typing import Any, Sequence

import numpy as np
from scipy import sparse
from matplotlib import colormaps
from matplotlib.colors import to_hex

OUTLIER_COLOUR = "#d32f2f"
# tab20 without its reds and pinks (6, 7, 12, 13), so that only outlier communities are red.
_PALETTE = [to_hex(colormaps["tab20"](i)) for i in (0, 2, 4, 8, 10, 14, 16, 18, 1, 3, 5, 9, 11, 15, 17, 19)]


def weights_from_edges(n: int, edges: Sequence[dict[str, Any]]) -> sparse.csr_array:
    """Symmetric sparse ``(n, n)`` weight matrix from the diagnostics' edge list (local
    indices; each pair listed once, as ``edge_list`` writes it): no dense n x n at large n."""
    a = np.array([int(e["source"]) for e in edges], dtype=np.int64)
    b = np.array([int(e["target"]) for e in edges], dtype=np.int64)
    w = np.array([float(e["weight"]) for e in edges], dtype=np.float64)
    coo = sparse.coo_array((np.concatenate([w, w]), (np.concatenate([a, b]), np.concatenate([b, a]))), shape=(n, n))
    return sparse.csr_array(coo)


def membership(n: int, communities: Sequence[dict[str, Any]]) -> np.ndarray:
    """``(n,)`` community id of each local image; -1 for an image in no community."""
    out = np.full(n, -1, dtype=np.int64)
    for c in communities:
        out[np.asarray(c["images"], dtype=np.int64)] = int(c["id"])
    return out


def community_colour(cid: int, outliers: set[int]) -> str:
    if cid in outliers:
        return OUTLIER_COLOUR
    if cid < 0:
        return "#9e9e9e"
    return _PALETTE[cid % len(_PALETTE)]


def _scale(pos: np.ndarray, size: int, pad: int) -> np.ndarray:
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    span = np.where(hi - lo > 0, hi - lo, 1.0)
    return pad + (pos - lo) / span * (size - 2 * pad)


def graph_svg(
    subset: dict[str, Any],
    names: Sequence[str],
    global_index: Sequence[int],
    size: int = 640,
    max_edges: int = 4000,
    seed: int = 0,
    label_max_nodes: int = 60,
) -> str:
    """SVG of one subset's graph summary (``graph.diagnostics.summary`` output).

    names: batch names by global index; global_index: the subset's local -> global map.
    Only the ``max_edges`` heaviest edges are drawn (the file stays small for big batches;
    the count drawn is stated in the title). Nodes are labelled with image names up to
    ``label_max_nodes`` nodes; above that the names are in each node's tooltip only.
    """
    from codegraph_ad.graph.diagnostics import graph_layout

    n = len(global_index)
    edges = list(subset.get("edges", []))
    weights = weights_from_edges(n, edges)
    members = membership(n, subset.get("communities", []))
    outliers = {int(c) for c in subset.get("outlier_communities", [])}
    pos = _scale(graph_layout(weights, seed), size, 24)
    drawn = sorted(edges, key=lambda e: -float(e["weight"]))[:max_edges]
    wmax = max((float(e["weight"]) for e in drawn), default=1.0)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{size}" height="{size}" '
             f'role="img" aria-label="anomaly similarity graph">',
             f"<title>anomaly similarity graph: {n} images, {len(edges)} edges ({len(drawn)} drawn)</title>",
             '<g stroke="#333" stroke-linecap="round">']
    for e in reversed(drawn):  # light edges first, heavy ones on top
        a, b = int(e["source"]), int(e["target"])
        frac = float(e["weight"]) / wmax
        parts.append(f'<line x1="{pos[a, 0]:.1f}" y1="{pos[a, 1]:.1f}" x2="{pos[b, 0]:.1f}" y2="{pos[b, 1]:.1f}" '
                     f'stroke-width="{0.4 + 4 * frac:.2f}" stroke-opacity="{0.12 + 0.6 * frac:.2f}"/>')
    parts.append("</g><g>")
    for local in range(n):
        cid = int(members[local])
        g = int(global_index[local])
        is_out = cid in outliers
        label = html.escape(f"{names[g]} (community {cid}{', outlier' if is_out else ''})")
        parts.append(
            f'<circle cx="{pos[local, 0]:.1f}" cy="{pos[local, 1]:.1f}" r="{8 if is_out else 6}" '
            f'fill="{community_colour(cid, outliers)}" stroke="{"#000" if is_out else "#444"}" '
            f'stroke-width="{2.2 if is_out else 0.7}" data-open="{g}"><title>{label}</title></circle>'
        )
    parts.append("</g>")
    if n <= label_max_nodes:
        parts.append('<g font-size="9" fill="#333" pointer-events="none">')
        for local in range(n):
            g = int(global_index[local])
            right = pos[local, 0] > 0.6 * size  # keep long names inside the picture
            x = pos[local, 0] - 8 if right else pos[local, 0] + 8
            anchor = ' text-anchor="end"' if right else ""
            parts.append(f'<text x="{x:.1f}" y="{pos[local, 1] - 6:.1f}"{anchor}>{html.escape(names[g])}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
