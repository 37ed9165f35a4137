"""Benchmark tables: flat rows per (category, method), per-method means, CSV and Markdown.

Rows hold fractions in [0, 1] (as the metrics package returns them); the Markdown shows
percent with one decimal, laid out like the thesis's tables. A mean skips undefined (None)
values and says so with a footnote mark.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

from codegraph_ad.suite.published import COLUMNS, PublishedRow

METRIC_COLUMNS = COLUMNS + ("exclusion_rate", "capture_rate")
TIME_COLUMNS = ("features_s", "scoring_s", "wall_s", "s_per_image")
HEADERS = {
    "image_auroc": "AUROC-cls", "image_f1_max": "F1-cls", "image_ap": "AP-cls", "pixel_auroc": "AUROC-seg",
    "pixel_f1_max": "F1-seg", "pixel_ap": "AP-seg", "pixel_aupro": "PRO-seg", "exclusion_rate": "Excluded",
    "capture_rate": "Capture",
}
CSV_FIELDS = ("dataset", "category", "method", "backbone", "image_size", "n_images", "n_anomalous",
              *METRIC_COLUMNS, "n_consistent_patches", *TIME_COLUMNS)


def category_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per method of a category record (see runner.category_record)."""
    rows = []
    for method, res in record["methods"].items():
        image, pixel, cons, t = res["image"], res["pixel"], res["consistency"], res["timings"]
        rows.append({
            "dataset": record["dataset"], "category": record["category"], "method": method,
            "backbone": res["backbone"], "image_size": res["image_size"],
            "n_images": record["n_images"], "n_anomalous": record["n_anomalous"],
            "image_auroc": image["auroc"], "image_f1_max": image["f1_max"], "image_ap": image["ap"],
            "pixel_auroc": pixel["auroc"], "pixel_f1_max": pixel["f1_max"], "pixel_ap": pixel["ap"],
            "pixel_aupro": pixel["aupro"], "exclusion_rate": cons["exclusion_rate"],
            "capture_rate": cons["capture_rate"], "n_consistent_patches": cons["n_consistent_patches"],
            **{k: t[k] for k in TIME_COLUMNS},
        })
    return rows


def mean_rows(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per method: mean of every metric and time over the categories where it is defined.

    ``n_defined`` maps each column to how many categories entered its mean.
    """
    out = []
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        mean: dict[str, Any] = {"dataset": mine[0]["dataset"], "category": "mean", "method": method,
                                "backbone": mine[0]["backbone"], "image_size": mine[0]["image_size"],
                                "n_images": sum(r["n_images"] for r in mine),
                                "n_anomalous": sum(r["n_anomalous"] for r in mine), "n_consistent_patches": None,
                                "n_categories": len(mine), "n_defined": {}}
        for col in METRIC_COLUMNS + TIME_COLUMNS:
            values = [r[col] for r in mine if r[col] is not None]
            mean[col] = sum(values) / len(values) if values else None
            mean["n_defined"][col] = len(values)
        out.append(mean)
    return out


def to_csv(rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else f"{r[k]:.6g}" if isinstance(r[k], float) else r[k])
                         for k in CSV_FIELDS})
    return buf.getvalue()


def _pct(v: float | None, partial: bool = False) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}" + ("*" if partial else "")


def _table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in body]


def _cells(r: dict[str, Any], cols: Sequence[str]) -> list[str]:
    n_defined = r.get("n_defined")
    return [_pct(r[c], bool(n_defined) and 0 < n_defined[c] < r["n_categories"]) for c in cols]


def markdown(title: str, intro: Sequence[str], rows: Sequence[dict[str, Any]], means: Sequence[dict[str, Any]],
             matching: Sequence[PublishedRow], others: Sequence[PublishedRow]) -> str:
    """The whole report: measured tables, then the published numbers in their own section."""
    all_rows = list(rows) + list(means)
    name = lambda r: "**mean**" if r["category"] == "mean" else r["category"]  # noqa: E731
    lines = [f"# {title}", "", *intro, "", "## Measured", ""]
    lines += _table(["Category", "Method", *(HEADERS[c] for c in COLUMNS)],
                    [[name(r), r["method"], *_cells(r, COLUMNS)] for r in all_rows])
    lines += ["", "Percent. n/a: undefined for this data (e.g. no normal image). "
              "`*`: mean over the categories where the metric is defined.", "",
              "## Consistent anomalies (SPEC section 12)", ""]
    lines += _table(["Category", "Method", "Excluded", "Capture", "Consistent patches"],
                    [[name(r), r["method"], *_cells(r, ("exclusion_rate", "capture_rate")),
                      "" if r.get("n_consistent_patches") is None else str(r["n_consistent_patches"])]
                     for r in all_rows])
    lines += ["", "Excluded: share of all patches CoDeGraph removed from the references. Capture: share of the "
              "consistent patches (anomalous patches whose MuSc score, at MuSc's default q, is below the 80th "
              "percentile of the MuSc scores of the patches of normal images) CoDeGraph excluded; needs both "
              "methods (docs/codegraph.md, \"Capture rate (one definition)\").", "", "## Time", ""]
    lines += _table(["Category", "Method", "Images", "Features s", "Scoring s", "Total s", "s/image"],
                    [[name(r), r["method"], str(r["n_images"]),
                      *("n/a" if r[c] is None else f"{r[c]:.2f}" for c in TIME_COLUMNS)] for r in all_rows])
    lines += ["", "## Published numbers (reference only, not measured by this run)", ""]
    if matching:
        lines += ["Same dataset and backbone as this run:", ""] + _published_table(matching) + [""]
    else:
        lines += ["No published numbers for this dataset with this run's backbone.", ""]
    if others:
        lines += ["Same dataset, other backbones (not comparable with the measured rows):", ""]
        lines += _published_table(others) + [""]
    return "\n".join(lines) + "\n"


def _published_table(rows: Sequence[PublishedRow]) -> list[str]:
    cols = METRIC_COLUMNS
    body = [[r.subset, r.method, r.backbone, r.resolution,
             *(f"{r.metrics[c]:g}" if c in r.metrics else "" for c in cols), r.source] for r in rows]
    return _table(["Subset", "Method", "Backbone", "px", *(HEADERS[c] for c in cols), "Source"], body)
