"""PNG figures of the analyses (matplotlib, Agg canvas; no display needed).

Every function takes the JSON-ready results of ``analysis.run`` (one dict per layer), so a
figure shows exactly the numbers written to ``analysis.json``.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from codegraph_ad.io.atomic import write_bytes

_GROUP_COLOURS = {"normal": "tab:blue", "consistent": "tab:red", "inconsistent": "tab:orange",
                  "repeated": "tab:purple"}


def _arr(values: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _grid(n_panels: int, title: str) -> tuple[Figure, list[Axes]]:
    cols = min(n_panels, 4)
    rows = math.ceil(n_panels / cols)
    # Fixed margins: constrained layout doubled the drawing time of these small panels.
    fig = Figure(figsize=(4.2 * cols, 3.8 * rows), dpi=100)
    fig.subplots_adjust(left=0.07, right=0.98, bottom=0.13 / rows, top=1 - 0.16 / rows, wspace=0.3, hspace=0.35)
    axes = [fig.add_subplot(rows, cols, i + 1) for i in range(n_panels)]
    fig.suptitle(title)
    return fig, axes


def _save(fig: Figure, path: Path) -> Path:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return write_bytes(path, buf.getvalue())


def _plot_curve(ax: Axes, ranks: np.ndarray, curve: np.ndarray, fit: dict[str, Any] | None, label: str, colour: str) -> None:
    ok = np.isfinite(curve) & (curve > 0)
    ax.loglog(ranks[ok], curve[ok], "o", ms=3, color=colour, label=label)
    if fit is not None:
        x = np.arange(fit["rank_min"], fit["rank_max"] + 1, dtype=np.float64)
        ax.loglog(x, fit["prefactor"] * x ** fit["exponent"], "-", color=colour, lw=1,
                  label=f"fit: slope {fit['exponent']:.2f}, R² {fit['r2']:.3f}")


def plot_scaling(layers: list[dict[str, Any]], path: Path) -> Path:
    """Mean log growth rate of normal patches against rank, log-log, with the power-law fit."""
    fig, axes = _grid(len(layers), "similarity scaling: mean log growth rate of normal patches")
    for ax, layer in zip(axes, layers):
        s = layer["scaling"]
        _plot_curve(ax, np.asarray(s["ranks"]), _arr(s["mean_tau"]), s["fit"], "normal", _GROUP_COLOURS["normal"])
        ax.set_title(f"block {layer['block']} ({s['n_patches']} patches)")
        ax.set_xlabel("rank i")
        ax.set_ylabel("mean tau^(i)")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_burnout(layers: list[dict[str, Any]], path: Path) -> Path:
    """Growth curves of normal, consistent and inconsistent anomalous patches (and of the
    repeated defect's patches when known); dotted lines mark the burnout ranks."""
    fig, axes = _grid(len(layers), "neighbour burnout: growth curves by patch group")
    for ax, layer in zip(axes, layers):
        s, b = layer["scaling"], layer["burnout"]
        ranks = np.asarray(s["ranks"])
        _plot_curve(ax, ranks, _arr(s["mean_tau"]), s["fit"], "normal", _GROUP_COLOURS["normal"])
        for group in ("consistent", "inconsistent", "repeated"):
            g = b.get(group)
            if g is None or g["n_patches"] == 0:
                continue
            label = "repeated defect" if group == "repeated" else group
            _plot_curve(ax, ranks, _arr(g["mean_tau"]), None, f"{label} ({g['n_patches']})", _GROUP_COLOURS[group])
            if group in ("consistent", "repeated") and g["burnout_rank"] is not None:
                ax.axvline(g["burnout_rank"], color=_GROUP_COLOURS[group], ls=":", lw=1)
        ax.set_title(f"block {layer['block']}")
        ax.set_xlabel("rank i")
        ax.set_ylabel("mean tau^(i)")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_hill(layers: list[dict[str, Any]], path: Path) -> Path:
    """Hill estimates of the tail index of 1/d against the number of order statistics k."""
    fig, axes = _grid(len(layers), "Hill plot: tail index of patch-to-patch similarity 1/d")
    for ax, layer in zip(axes, layers):
        h = layer["hill"]
        k = np.asarray(h["k"], dtype=np.float64)
        ax.fill_between(k, _arr(h["q25"]), _arr(h["q75"]), alpha=0.25, color="tab:blue", label="quartiles")
        ax.plot(k, _arr(h["median"]), color="tab:blue", lw=1.2, label="median")
        if h["plateau"] is not None:
            ax.axhline(h["plateau"], color="black", ls="--", lw=1, label=f"plateau {h['plateau']:.2f}")
            ax.axvspan(h["k_lo"], h["k_hi"], color="grey", alpha=0.1)
            ax.set_ylim(0, 4 * h["plateau"])  # the first k reach far higher and hide the plateau
        ax.set_xscale("log")
        ax.set_title(f"block {layer['block']} ({h['n_references']} references)")
        ax.set_xlabel("k (order statistics)")
        ax.set_ylabel("alpha_hat(k)")
        ax.legend(fontsize=7)
    return _save(fig, path)


def plot_beta_qq(layers: list[dict[str, Any]], path: Path) -> Path:
    """Q-Q of normalised distances d^(i)/d^(k) against the fitted Beta(alpha, 1)."""
    fig, axes = _grid(len(layers), "normalised distances d^(i)/d^(k) against Beta(alpha, 1)")
    for ax, layer in zip(axes, layers):
        b = layer["beta"]
        ax.plot([0, 1], [0, 1], color="grey", lw=1)
        if b["alpha"] is not None:
            ax.plot(b["qq"]["theoretical"], b["qq"]["empirical"], "o", ms=3, color="tab:green")
            ax.set_title(f"block {layer['block']}: alpha {b['alpha']:.2f}, KS {b['ks']:.3f}")
        else:
            ax.set_title(f"block {layer['block']}: no sample")
        ax.set_xlabel("Beta(alpha, 1) quantile")
        ax.set_ylabel("empirical quantile")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
    return _save(fig, path)
