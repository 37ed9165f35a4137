"""``report.html``: one offline page per run to look at the results by eye.

Everything the page needs is inline (CSS, JS, thumbnails as JPEG data URIs, the graph as
SVG); no network resource is referenced. The detail views (input, map, overlay, excluded
patches at ``detail_size`` px) are inline too for small batches; above
``inline_detail_max_images`` they are written in chunks to ``report_assets/details_*.js``
beside the page (loaded on demand) and the run's own ``overlays/`` are linked, so a
1,000-image page stays a few MB: see docs/report.md for the measured sizes.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
from PIL import Image

from codegraph_ad.config import documented
from codegraph_ad.graph.groups import is_repeated_defect
from codegraph_ad.io.atomic import write_text
from codegraph_ad.report.assets import CSS, JS
from codegraph_ad.report.console import flags_text
from codegraph_ad.report.overlay import outline_cells, shared_scale
from codegraph_ad.io.run_folder import REPORT, REPORT_ASSETS, RunFolder, read_run_folder
from codegraph_ad.report.views import VIEW_NAMES, data_uri, encode, image_views, thumbnail

REPORT_NAME = REPORT
ASSETS_DIR = REPORT_ASSETS
# A transparent 1x1 GIF: the thumbnail of an image the run folder cannot show.
EMPTY_IMAGE = "data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw=="


@dataclass(frozen=True)
class ReportConfig:
    """Sizes that keep the page light.

    thumb_size: long side of the table thumbnails (128 px reads well in a table; JPEG at
        quality 75 is about 3-5 kB for a photo, see docs/report.md).
    detail_size: long side of the detail views.
    inline_detail_max_images: up to this many images the detail views are inlined (one
        self-contained file); above it they go to ``report_assets/``.
    graph_max_edges: heaviest edges drawn in the graph SVG.
    assets_chunk_images: images per ``report_assets/details_NNNN.js`` file: one file per
        image would cost a thousand files (and fsyncs); one file for all would load every
        detail view to show one.
    group_thumb_size, group_max_thumbs: thumbnails of a repeated-defect group at the top
        of the page (larger than the table's: they are the finding); members beyond the
        limit are listed by name.
    """

    thumb_size: int = documented(128, "thumbnail long side in px")
    thumb_quality: int = documented(75, "JPEG quality of the thumbnails")
    detail_size: int = documented(320, "detail view long side in px")
    detail_quality: int = documented(85, "JPEG quality of the detail views and group thumbnails")
    inline_detail_max_images: int = documented(
        50, "inline the detail views up to this many images (else report_assets/)")
    graph_size: int = documented(640, "side of the graph SVG in px")
    graph_max_edges: int = documented(4000, "heaviest edges drawn in the graph SVG")
    assets_chunk_images: int = documented(50, "images per report_assets/details_NNNN.js file")
    group_thumb_size: int = documented(160, "thumbnail long side of a repeated-defect group in px")
    group_max_thumbs: int = documented(48, "thumbnails shown per repeated-defect group (the rest listed by name)")


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _fmt(x: Any, digits: int = 4) -> str:
    if isinstance(x, bool) or x is None:
        return "n/a" if x is None else str(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return f"{float(x):.{digits}g}" if math.isfinite(float(x)) else "n/a"
    return str(x)


def _json_script(obj: Any) -> str:
    """JSON safe inside <script>: '</' cannot close the element."""
    return json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def _kv_table(pairs: list[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><td>{_e(k)}</td><td>{_e(json.dumps(v) if isinstance(v, (list, tuple)) else _fmt(v, 6))}</td></tr>"
        for k, v in pairs
    )
    return f'<table class="kv">{body}</table>'


def _rel_url(path: Path, root: Path) -> str:
    return "/".join(quote(part) for part in path.relative_to(root).parts)


# ---------------------------------------------------------------- sections


def repeated_defect_groups(run: RunFolder) -> list[dict[str, Any]]:
    """The run's repeated-defect groups: stored in scores.json, or derived from the graph
    diagnostics for runs written before the field existed (same helper, same answer)."""
    from codegraph_ad.graph.groups import repeated_defect_groups as from_diagnostics

    stored = run.stored_repeated_defect_groups
    if stored is not None:
        return stored
    flags = [r.get("anomalous") for r in run.rows]
    return from_diagnostics(run.scores.get("diagnostics"), run.names,
                            None if any(f is None for f in flags) else flags) or []


def _flags_line(run: RunFolder) -> str:
    """The decision at the top of the page; nothing for runs written without one."""
    decision = run.decision
    if decision is None or "threshold" not in decision:
        return ""
    return f'<p class="flags"><b>{_e(flags_text(decision))}</b></p>'


def _summary(run: RunFolder, labels: list[int] | None) -> str:
    cfg = run.config
    scores = [float(r["score"]) for r in run.rows]
    timings = run.manifest.timings
    cards = [("images", run.n_images), ("method", cfg.get("method", "n/a")),
             ("patch grid", " x ".join(map(str, run.grid))), ("top score", _fmt(max(scores)))]
    if labels is not None:
        cards.append(("labelled anomalous", sum(1 for x in labels if x == 1)))
    if run.excluded is not None:
        cards.append(("patches excluded", f"{100 * float(run.excluded.mean()):.2f}%"))
    total = sum(float(v) for v in timings.values() if isinstance(v, (int, float)))
    cards.append(("run time", f"{total:.1f} s"))
    return '<div class="cards">' + "".join(
        f"<div class=\"card\"><b>{_e(v)}</b><span>{_e(k)}</span></div>" for k, v in cards) + "</div>"


def _metrics(metrics: dict[str, Any]) -> str:
    groups = [g for g in ("image", "pixel") if isinstance(metrics.get(g), dict)]
    keys: list[str] = []
    for g in groups:
        keys += [k for k in metrics[g] if k not in keys]
    head = "".join(f'<th class="num">{_e(k)}</th>' for k in keys)
    body = ""
    for g in groups:
        cells = "".join(
            f'<td class="num">{"n/a" if metrics[g].get(k) is None else f"{100 * float(metrics[g][k]):.2f}"}</td>'
            for k in keys)
        body += f"<tr><td>{g}</td>{cells}</tr>"
    extra = [(k, v) for k, v in metrics.items() if k not in ("image", "pixel", "timings") and not isinstance(v, dict)]
    return (f'<table id="metrics-table"><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'<p class="muted">percent; fractions in metrics.json</p>' + (_kv_table(extra) if extra else ""))


def _table(run: RunFolder, thumbs: list[str], labels: list[int] | None, order: list[int]) -> str:
    has_defect = any("defect" in r for r in run.rows)
    excluded_counts = run.excluded.sum(axis=1) if run.excluded is not None else None
    scores = np.array([float(r["score"]) for r in run.rows])
    lo, hi = float(scores.min()), float(scores.max())
    cols = ['<th data-sort="rank" data-type="num" class="num">#</th>', "<th>overlay</th>",
            '<th data-sort="name" data-type="text">name</th>',
            '<th data-sort="score" data-type="num" class="num sorted-desc">score</th>',
            '<th data-sort="raw" data-type="num" class="num">raw score</th>']
    if labels is not None:
        cols.append('<th data-sort="label" data-type="num">label</th>')
    if has_defect:
        cols.append('<th data-sort="defect" data-type="text">defect</th>')
    if excluded_counts is not None:
        cols.append('<th data-sort="excluded" data-type="num" class="num">excluded</th>')
    rank = {i: r + 1 for r, i in enumerate(order)}
    body = []
    for i in order:
        row = run.rows[i]
        s = float(row["score"])
        bar = 60 * (s - lo) / (hi - lo) if hi > lo else 0.0
        cells = [f'<td class="num" data-key="rank" data-value="{rank[i]}">{rank[i]}</td>',
                 f'<td><img class="thumb" loading="lazy" decoding="async" alt="" src="{thumbs[i]}"></td>',
                 f'<td data-key="name">{_e(row["name"])}</td>',
                 f'<td class="num" data-key="score" data-value="{s!r}">{_fmt(s)}<span class="bar" style="width:{bar:.0f}px"></span></td>',
                 f'<td class="num" data-key="raw" data-value="{float(row.get("raw_score", float("nan")))!r}">'
                 f'{_fmt(row.get("raw_score"))}</td>']
        if labels is not None:
            lab = labels[i]
            cells.append(f'<td data-key="label" data-value="{lab}" class="label-{lab}">{"anomalous" if lab else "normal"}</td>')
        if has_defect:
            cells.append(f'<td data-key="defect">{_e(row.get("defect", ""))}</td>')
        if excluded_counts is not None:
            cells.append(f'<td class="num" data-key="excluded" data-value="{int(excluded_counts[i])}">{int(excluded_counts[i])}</td>')
        body.append(f'<tr data-idx="{i}">{"".join(cells)}</tr>')
    label_filter = ""
    if labels is not None:
        label_filter = ('<select id="filter-label"><option value="">all labels</option>'
                        '<option value="0">normal</option><option value="1">anomalous</option></select>')
    controls = (f'<div class="controls"><input id="filter-text" type="search" placeholder="filter by name or defect">'
                f'{label_filter}<span id="row-count" class="muted"></span>'
                f'<span class="muted">click a row for details, a header to sort</span></div>')
    return (controls + '<table id="images-table" data-sort-key="score" data-sort-dir="desc"><thead><tr>'
            + "".join(cols) + "</tr></thead><tbody>" + "".join(body) + "</tbody></table>")


def _graph(run: RunFolder, config: ReportConfig) -> str:
    """Graph SVG, communities and filtering per subset; empty for runs without graph stages."""
    from codegraph_ad.report.graph_svg import OUTLIER_COLOUR, community_colour, graph_svg

    diag = run.scores.get("diagnostics") or {}
    subsets = [s for s in diag.get("subsets", []) if isinstance(s, dict) and "communities" in s]
    if not subsets:
        return ""
    names = run.names
    parts = []
    for si, sub in enumerate(subsets):
        index = [int(x) for x in sub.get("images", range(run.n_images))]
        outliers = {int(c) for c in sub.get("outlier_communities", [])}
        title = f"subset {si + 1} of {len(subsets)}" if len(subsets) > 1 else "whole batch"
        links = sub.get("links", {})
        q = sub.get("quartiles", {})
        facts = [("images", len(index)), ("reference rank k", sub.get("reference_rank_k")),
                 ("links", links.get("n_links")), ("coverage", links.get("coverage")),
                 ("reached target coverage", links.get("reached_target")), ("Leiden resolution", sub.get("resolution")),
                 ("density Q1 / Q3 / IQR", " / ".join(_fmt(q.get(k)) for k in ("q1", "q3", "iqr"))),
                 ("Tukey fence", q.get("fence")),
                 ("smallest community in the Tukey rule", q.get("min_community_size")),
                 ("outlier communities", len(outliers)),
                 ("exclusion rate", sub.get("exclusion_rate"))]
        rows = []
        for c in sorted(sub["communities"], key=lambda c: -float(c.get("density", 0.0))):
            cid = int(c["id"])
            members = ", ".join(f'<a href="#" data-open="{index[j]}">{_e(names[index[j]])}</a>' for j in c["images"])
            rows.append(
                f'<tr class="{"outlier-row" if cid in outliers else ""}"><td><span class="dot" '
                f'style="background:{community_colour(cid, outliers)}"></span>{cid}</td><td class="num">{c.get("size")}</td>'
                f'<td class="num">{_fmt(c.get("density"))}</td><td>{"yes" if c.get("eligible") else "no"}</td>'
                f'<td>{"yes" if cid in outliers else "no"}</td><td>{members}</td></tr>')
        filt = [f"<tr><td>{r.get('community')}</td><td class=\"num\">{_fmt(r.get('threshold'))}</td>"
                f"<td class=\"num\">{r.get('n_excluded')}</td><td>{'yes' if r.get('skipped') else 'no'}</td></tr>"
                for r in sub.get("filtering", [])]
        svg = graph_svg(sub, names, index, config.graph_size, config.graph_max_edges)
        parts.append(
            f"<h3>{_e(title)}</h3><div class=\"graph-wrap\">{svg}</div>"
            f'<p class="legend"><span><i class="dot" style="background:{OUTLIER_COLOUR}"></i>outlier community '
            f"(its consistent-anomaly patches are removed from the references)</span>"
            f"<span>other colours: communities; edge width: link weight; click a node for the image</span></p>"
            + _kv_table(facts)
            + "<h4>communities (densest first)</h4><table class=\"communities\"><thead><tr><th>id</th><th>size</th>"
              "<th>density</th><th>eligible</th><th>outlier</th><th>images</th></tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>"
            + ("<h4>targeted filtering</h4><table><thead><tr><th>community</th><th>threshold</th>"
               "<th>patches excluded</th><th>skipped</th></tr></thead><tbody>" + "".join(filt) + "</tbody></table>"
               if filt else ""))
    return "".join(parts)


def _patches(k: int) -> str:
    return f"{k} patch" if k == 1 else f"{k} patches"


def _group_thumbnail(run: RunFolder, i: int, source: Any, config: ReportConfig) -> str:
    """A group member's overlay with its excluded patches outlined, as a data URI."""
    if source is None:
        return EMPTY_IMAGE
    # Scaled up as well as down: a small input's cells must stay visible as outlined blocks.
    f = config.group_thumb_size / max(source.size)
    img = source.resize((max(1, round(source.width * f)), max(1, round(source.height * f))), Image.BILINEAR)
    if run.excluded is not None and len(run.grid) == 2 and run.excluded[i].any():
        img = outline_cells(img, run.excluded[i].reshape(run.grid))
    return data_uri(encode(img, "JPEG", config.detail_quality))


def _repeated_defects(run: RunFolder, thumbs: dict[int, str], config: ReportConfig) -> list[str]:
    """One section per repeated-defect group (CoDeGraph's outlier communities), for the top
    of the page: a repeated defect is what MuSc alone scores as normal, so it is said first.

    thumbs: data URIs of the members shown as pictures (``_group_thumbnail``)."""
    groups = repeated_defect_groups(run)
    where = {name: i for i, name in enumerate(run.names)}
    m = int(np.prod(run.grid))
    n_subsets = len({g.get("subset", 0) for g in groups})
    out = []
    for k, group in enumerate(groups):
        members = [(where[name], j) for j, name in enumerate(group["images"]) if name in where]
        per_image = group.get("excluded_per_image") or []
        figures, rest = [], []
        for i, j in members:
            if j < len(per_image):
                count = int(per_image[j])
            else:
                count = int(run.excluded[i].sum()) if run.excluded is not None else 0
            link = f'<a href="#" data-open="{i}">{_e(run.names[i])}</a>'
            if len(figures) >= config.group_max_thumbs:
                rest.append(link)
                continue
            figures.append(
                f'<figure class="group-thumb"><a href="#" data-open="{i}"><img alt="overlay of {_e(run.names[i])}" '
                f'src="{thumbs.get(i, EMPTY_IMAGE)}"></a>'
                f"<figcaption>{link}<br><span class=\"muted\">{_patches(count)} excluded "
                f"({100 * count / m if m else 0:.1f}%)</span></figcaption></figure>")
        n = int(group.get("size", len(members)))
        facts = [f"{_patches(int(group.get('excluded_patches', 0)))} excluded from the references "
                 f"({100 * float(group.get('excluded_share', 0.0)):.1f}% of the group's patches)",
                 f"community density {_fmt(group.get('density'))}"]
        if n_subsets > 1:
            facts.append(f"subset {int(group.get('subset', 0)) + 1}")
        more = f'<p>and {len(rest)} more: {", ".join(rest)}</p>' if rest else ""
        if is_repeated_defect(group):
            title = f"{n} {'image has' if n == 1 else 'images share'} a repeated defect"
            why = ("CoDeGraph found these images alike in the same unusual way (an outlier community of the "
                   "anomaly similarity graph): the patches outlined in magenta were removed from the references, "
                   "so the defect is scored against normal patches instead of its own copies.")
        else:
            title = f"{n} images are unusually alike: no repeated defect found"
            k_flagged = int(group.get("anomalous_images", 0))
            removed = ("put their patches back into the references after rescoring" if group.get("restored") else
                       "removed the patches outlined in magenta from the references")
            why = (f"CoDeGraph found these images alike in the same unusual way and {removed}; scored without "
                   f"their look-alikes, {k_flagged} of the {n} "
                   f"{'is' if k_flagged == 1 else 'are'} flagged, so this is a group of look-alike images (the same "
                   "lighting or pose, say) rather than a shared defect.")
        out.append(
            f'<section id="repeated-defect-{k + 1}" class="repeated-defect">'
            f"<h2>{title}</h2>"
            f"<p>{' &middot; '.join(_e(f) for f in facts)}</p>"
            f'<div class="group-thumbs">{"".join(figures)}</div>{more}'
            f'<p class="muted">{why} Click an image for details.</p>'
            "</section>")
    return out


def _analysis(run: RunFolder) -> str:
    """Key numbers and figures of ``codegraph-ad analyze`` when it has been run (default folder)."""
    path = run.root / "analysis" / "analysis.json"
    if not path.exists():
        return ""
    result = json.loads(path.read_text())
    rows = []
    has_repeated = any("repeated" in (layer.get("burnout") or {}) for layer in result.get("layers", []))
    for layer in result.get("layers", []):
        fit = layer.get("scaling", {}).get("fit") or {}
        burn = (layer.get("burnout") or {}).get("consistent") or {}
        rep = (layer.get("burnout") or {}).get("repeated") or {}
        rep_cell = f"<td class=\"num\">{_fmt(rep.get('burnout_rank'))}</td>" if has_repeated else ""
        rows.append(
            f"<tr><td>{_e(layer.get('block'))}</td><td class=\"num\">{_fmt(fit.get('exponent'))}</td>"
            f"<td class=\"num\">{_fmt(fit.get('r2'))}</td><td class=\"num\">{_fmt(layer.get('hill', {}).get('plateau'))}</td>"
            f"<td class=\"num\">{_fmt(layer.get('beta', {}).get('alpha'))}</td>"
            f"<td class=\"num\">{_fmt(layer.get('beta', {}).get('ks'))}</td>"
            f"<td class=\"num\">{_fmt(burn.get('burnout_rank'))}</td>{rep_cell}</tr>")
    figures = "".join(
        f'<figure><img loading="lazy" src="analysis/{quote(name)}" alt="{_e(key)}" style="max-width:100%">'
        f"<figcaption>{_e(key)}</figcaption></figure>"
        for key, name in result.get("figures", {}).items() if (run.root / "analysis" / name).exists())
    return ("<table><thead><tr><th>block</th><th>scaling slope</th><th>R²</th><th>Hill plateau</th>"
            "<th>Beta alpha</th><th>KS</th><th>burnout rank (consistent)</th>"
            + ("<th>burnout rank (repeated defect)</th>" if has_repeated else "") + "</tr></thead><tbody>"
            + "".join(rows) + "</tbody></table>"
            + f'<p class="muted">normal patches: {_e(result.get("normal_patches", "n/a"))}; details in '
              "analysis/analysis.json and docs/analysis.md</p>" + figures)


def _run_details(run: RunFolder) -> str:
    m = run.manifest
    parts = ["<h3>configuration</h3>", _kv_table(_flatten(m.config))]
    if m.backbone is not None:
        parts += ["<h3>backbone</h3>", _kv_table([(k, v) for k, v in m.backbone.to_dict().items() if v is not None])]
    parts += ["<h3>versions</h3>", _kv_table(list(m.versions.items()))]
    parts += ["<h3>timings (s)</h3>", _kv_table(list(m.timings.items()))]
    skipped = run.scores.get("skipped") or []
    if skipped:
        parts += ["<h3>skipped files</h3>", _kv_table([(s.get("path"), s.get("reason")) for s in skipped])]
    parts.append(f'<p class="muted">run folder: {_e(run.root.resolve())}</p>')
    return "".join(parts)


_DETAIL = """<div id="detail" hidden><div class="panel"><header><h2 id="detail-title"></h2><div>
<button id="detail-prev" type="button">&larr; previous</button> <button id="detail-next" type="button">next &rarr;</button>
<button id="detail-close" type="button">close &times;</button></div></header>
<table class="kv"><tbody id="detail-facts"></tbody></table><div id="detail-views" class="views"></div></div></div>"""


# ---------------------------------------------------------------- assembly


def _labels(run: RunFolder) -> list[int] | None:
    if run.rows and all("label" in r for r in run.rows):
        return [int(r["label"]) for r in run.rows]
    return None


def _facts(run: RunFolder, i: int, rank: int, labels: list[int] | None) -> list[list[str]]:
    row = run.rows[i]
    facts = [["score", _fmt(row.get("score"), 6)], ["raw score", _fmt(row.get("raw_score"), 6)],
             ["rank", f"{rank} of {run.n_images}"]]
    if labels is not None:
        facts.append(["label", "anomalous" if labels[i] else "normal"])
    if "defect" in row:
        facts.append(["defect", str(row["defect"])])
    if run.excluded is not None:
        facts.append(["excluded patches", f"{int(run.excluded[i].sum())} of {run.excluded.shape[1]}"])
    sizes = run.manifest.original_sizes or []
    if i < len(sizes):
        dims = list(sizes[i])
        facts.append(["size", f"{dims[1]} x {dims[0]} px" if len(dims) == 2 else " x ".join(map(str, dims))])
    facts.append(["path", str(row.get("path", ""))])
    return facts


def _scale(run: RunFolder) -> tuple[float, float]:
    if run.patch_scores is not None:
        return shared_scale(run.patch_scores)
    scores = np.array([float(r.get("raw_score", r["score"])) for r in run.rows])
    return shared_scale(scores)


def _chunk_script(first: int, details: list[dict[str, str]]) -> str:
    """A script that adds image ``first + j``'s views to ``window.CODEGRAPH_DETAILS``.

    Script files load from file:// where fetch() does not, so the page can pull a chunk of
    detail views on demand without a server.
    """
    body = _json_script({str(first + j): d for j, d in enumerate(details)})
    return f"window.CODEGRAPH_DETAILS=Object.assign(window.CODEGRAPH_DETAILS||{{}},{body});\n"


def _write_chunks(run: RunFolder, details: list[dict[str, str]], size: int) -> list[str]:
    """Detail views in ``report_assets/details_NNNN.js``, ``size`` images each; stale ones removed."""
    folder = run.root / ASSETS_DIR
    names = []
    for k, first in enumerate(range(0, len(details), size)):
        path = folder / f"details_{k:04d}.js"
        write_text(path, _chunk_script(first, details[first : first + size]))
        names.append(path.name)
    for old in folder.glob("details_*.js"):
        if old.name not in names:
            old.unlink()
    return [f"{ASSETS_DIR}/{name}" for name in names]


def build_report(run: RunFolder, config: ReportConfig = ReportConfig()) -> str:
    """The page as a string; beyond the inline limit the detail views are written as chunks."""
    n = run.n_images
    labels = _labels(run)
    scale = _scale(run)
    inline = n <= config.inline_detail_max_images
    thumbs: list[str] = []
    details: list[dict[str, str]] = []
    shown = {name for g in repeated_defect_groups(run) for name in g.get("images", [])[:config.group_max_thumbs]}
    group_thumbs: dict[int, str] = {}
    for i, name in enumerate(run.names):
        views = image_views(run, i, scale, config.detail_size)
        src = views.thumbnail_source()
        if name in shown:
            group_thumbs[i] = _group_thumbnail(run, i, src, config)
        thumbs.append(data_uri(encode(thumbnail(src, config.thumb_size), "JPEG", config.thumb_quality))
                      if src is not None else EMPTY_IMAGE)
        links: dict[str, str] = {}
        for key, img in views.as_dict().items():
            if img is None:
                continue
            if not inline and key == "overlay" and run.overlay_file(name).exists():
                links[key] = _rel_url(run.overlay_file(name), run.root)  # already on disk: link it
            else:
                links[key] = data_uri(encode(img, "JPEG", config.detail_quality))
        details.append(links)
    # Inline pages still clear the chunks an earlier, larger build left behind.
    chunk_files = _write_chunks(run, [] if inline else details, config.assets_chunk_images)
    order = sorted(range(n), key=lambda i: (-float(run.rows[i]["score"]), i))
    rank = {i: r + 1 for r, i in enumerate(order)}
    data = {
        "rows": [{"name": run.rows[i]["name"], "defect": run.rows[i].get("defect", ""),
                  "label": labels[i] if labels is not None else None,
                  "facts": _facts(run, i, rank[i], labels)} for i in range(n)],
        "details": details if inline else None,
        "chunk_size": config.assets_chunk_images,
        "chunk_files": chunk_files,
        "view_names": [list(v) for v in VIEW_NAMES],
    }
    cfg = run.config
    feats = cfg.get("features", {})
    subtitle = (f"{_e(run.root.resolve().name)} &middot; {n} images &middot; method {_e(cfg.get('method', 'n/a'))} "
                f"&middot; backbone {_e(feats.get('backbone', 'n/a'))} at {_e(feats.get('image_size', 'n/a'))} px")
    graph = _graph(run, config)
    sections = _repeated_defects(run, group_thumbs, config)
    nav = ['<a href="#repeated-defect-1">repeated defects</a>'] if sections else []
    nav.append('<a href="#summary">summary</a>')
    sections.append(f'<section id="summary"><h2>summary</h2>{_summary(run, labels)}</section>')
    if run.metrics:
        nav.append('<a href="#metrics">metrics</a>')
        sections.append(f'<section id="metrics"><h2>metrics</h2>{_metrics(run.metrics)}</section>')
    nav.append('<a href="#images">images</a>')
    sections.append(f'<section id="images"><h2>images by score</h2>{_table(run, thumbs, labels, order)}</section>')
    if graph:
        nav.append('<a href="#graph">graph</a>')
        sections.append(f'<section id="graph"><h2>anomaly similarity graph</h2>{graph}</section>')
    analysis = _analysis(run)
    if analysis:
        nav.append('<a href="#analysis">analysis</a>')
        sections.append(f'<section id="analysis"><h2>similarity scaling and neighbour burnout</h2>{analysis}</section>')
    nav.append('<a href="#run">run</a>')
    sections.append(f'<section id="run"><h2>run</h2>{_run_details(run)}</section>')
    return (
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'
        f"<title>codegraph-ad report: {_e(run.root.resolve().name)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>codegraph-ad report</h1><p>{subtitle}</p>{_flags_line(run)}</header><nav>{''.join(nav)}</nav>"
        f"<main>{''.join(sections)}</main>{_DETAIL}"
        f'<script type="application/json" id="report-data">{_json_script(data)}</script>'
        f"<script>{JS}</script></body></html>\n"
    )


def write_report(run_dir: str | Path, config: ReportConfig = ReportConfig()) -> Path:
    """Build ``<run_dir>/report.html`` from a finished run folder; returns its path."""
    run = read_run_folder(run_dir)
    run.scores  # noqa: B018 - the report needs the scores: a missing or short scores.json is an error here
    return write_text(run.root / REPORT_NAME, build_report(run, config))
