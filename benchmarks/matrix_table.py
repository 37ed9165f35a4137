"""Tables and the issue's acceptance checks from the codegraph_matrix results files.

    python benchmarks/codegraph_matrix.py --table

Reads benchmarks/results/codegraph_matrix_<category>_<size>.json (untagged, fp32 files) and
writes benchmarks/results/codegraph_matrix.md: one row per cell with MuSc q = 0.3, MuSc
q = 0.1 and each CoDeGraph setting, and a pass/fail column per acceptance rule.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

TOLERANCE_CLEAN = 0.5  # clean and 5% / two-group cells: at least MuSc q = 0.3 minus this
TOLERANCE_SYNCA = 2.0  # repeated cells >= 15%: F1 and AP within this of the clean batch's MuSc
MAX_CLEAN_EXCLUSION = 0.5  # percent of patches
MIN_IN_COMMUNITIES = 90.0  # percent of the repeated images inside outlier communities
MIN_CAPTURE = 70.0  # percent
JUDGE = "musc_q0.3"
CHECKED = ("f1_max", "ap", "aupro")
NO_LOSS = ("auroc", "f1_max", "ap", "aupro")  # pixel metrics; image AUROC is checked too

FILE = re.compile(r"codegraph_matrix_(?P<cat>[a-z]+)_(?P<size>\d+)\.json$")
# tagged files that enter the tables: session reruns (_s23, _s24, ...) and the named studies
TABLED_TAG = re.compile(r"_(s\d+|dev3|gate|bf16|int8|exactsmall|bf16x3|graphmaps|gscale|rla|rla_guard)\.json$")


def cell_percent(name: str) -> tuple[str, int]:
    """("single" | "clean" | "two", percent of copies)."""
    if name == "clean":
        return "clean", 0
    kind = "two" if "+" in name else "single"
    return kind, int(name.rsplit("_", 1)[1])


def capture_checked(m: dict) -> tuple[float | None, int | None]:
    """The capture rate the rule reads: over the repeated images' own consistent patches.

    The batch-wide rate also counts the weak defects of the batch's other anomalous images
    (the clean batch's own: 63 on MPDD at 448 px), which no repeated-defect method is meant
    to exclude; files written before session 26 hold only the batch-wide one.
    """
    if "group_capture_rate_pct" in m:
        return m["group_capture_rate_pct"], m["group_n_consistent_patches"]
    return m.get("capture_rate_pct"), m.get("n_consistent_patches")


def check_cell(name: str, cell: dict, clean_judge: dict, method: str) -> list[str]:
    """The acceptance rules this cell breaks for ``method`` (empty: passes)."""
    m, judge = cell["methods"][method], cell["methods"][JUDGE]
    kind, p = cell_percent(name)
    fails = []
    if kind == "clean" or (kind == "single" and p < 15) or kind == "two":
        for k in (CHECKED if kind == "clean" else NO_LOSS):
            if m["pixel"][k] < judge["pixel"][k] - TOLERANCE_CLEAN:
                fails.append(f"{k} {m['pixel'][k]:.1f}<{judge['pixel'][k]:.1f}")
        if kind != "clean" and m["image"]["auroc"] < judge["image"]["auroc"] - TOLERANCE_CLEAN:
            fails.append(f"img {m['image']['auroc']:.1f}<{judge['image']['auroc']:.1f}")
        if kind == "clean" and m["exclusion_rate_pct"] > MAX_CLEAN_EXCLUSION:
            fails.append(f"excl {m['exclusion_rate_pct']:.2f}%")
    else:
        for k in ("f1_max", "ap"):
            if m["pixel"][k] < clean_judge["pixel"][k] - TOLERANCE_SYNCA:
                fails.append(f"{k} {m['pixel'][k]:.1f}<clean {clean_judge['pixel'][k]:.1f}-2")
        for tag, g in m["groups"].items():
            if (g.get("in_outlier_communities_pct") or 0.0) < MIN_IN_COMMUNITIES:
                fails.append(f"in-comm {g.get('in_outlier_communities_pct')}%")
        cap, n_cons = capture_checked(m)
        # no consistent patch (MuSc q = 0.3 already scores every defect patch high): nothing to capture
        if n_cons and (cap is None or cap < MIN_CAPTURE):
            fails.append(f"capture {cap}%")
    return fails


def _f(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


# Fields added after some files were written, with the value that reproduces what those files
# ran: a file lacking one ran this, whatever today's default is.
BEFORE_THE_FIELD = {"resolution_scale": 1.0}


def current_default(variants: dict) -> str | None:
    """The variant whose settings are today's GraphConfig() (a file may predate a default change;
    a field it lacks did not exist then, and ran as ``BEFORE_THE_FIELD`` says)."""
    from dataclasses import asdict

    from codegraph_ad.config import GraphConfig

    now = json.loads(json.dumps(asdict(GraphConfig())))
    return next((k for k, v in variants.items()
                 if all(val == now.get(f) for f, val in {**BEFORE_THE_FIELD, **v}.items())), None)


def table_for(res: dict) -> tuple[list[str], dict[str, int]]:
    cells = res["cells"]
    methods = [JUDGE, "musc_q0.1"] + [k for k in res["variants"]]
    default = current_default(res["variants"])
    precision = res.get("precision", "fp32")
    lines = [f"### {res['category']}, {res['size']} px{'' if precision == 'fp32' else ', ' + precision} (sources: "
             + ", ".join(f"{t} = {s}" for t, s in res["sources"].items()) + ")", "",
             f"Today's defaults are the setting `{default}` in this file." if default else
             "No setting in this file equals today's defaults.", ""]
    head = "| cell | N | " + " | ".join(
        f"{m} F1 / AP / AUPRO" + ("" if m.startswith("musc") else f" | {m} excl % / in-comm % / capture % | {m} ok")
        for m in methods) + " |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    passes = {m: 0 for m in methods if not m.startswith("musc")}
    clean_judge = cells["clean"]["methods"][JUDGE] if "clean" in cells else None
    for name, cell in cells.items():
        row = [name, str(cell["n_images"])]
        for m in methods:
            r = cell["methods"].get(m)
            if r is None:
                row.append("")
                continue
            px = r["pixel"]
            row.append(f"{_f(px['f1_max'])} / {_f(px['ap'])} / {_f(px['aupro'])}")
            if not m.startswith("musc"):
                inc = [g.get("in_outlier_communities_pct") for g in r["groups"].values()]
                batch_cap = _f(r.get('capture_rate_pct'), 0) if r.get('n_consistent_patches') else 'n/a'
                if "group_capture_rate_pct" in r:
                    group_cap = (f"{_f(r['group_capture_rate_pct'], 0)} of {r['group_n_consistent_patches']}"
                                 if r["group_n_consistent_patches"] else "n/a")
                    batch_cap += f" (group {group_cap})"
                row.append(f"{_f(r['exclusion_rate_pct'], 2)} / {'+'.join(_f(x, 0) for x in inc) or '-'} / {batch_cap}")
                fails = check_cell(name, cell, clean_judge, m) if clean_judge else ["no clean cell"]
                passes[m] += not fails
                row.append("yes" if not fails else "no: " + ", ".join(fails))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Cells passing every rule: " + ", ".join(f"{m} {k}/{len(cells)}" for m, k in passes.items()), ""]
    return lines, passes


def write_tables(results: Path) -> Path:
    out = ["# CoDeGraph matrix (generated by `python benchmarks/codegraph_matrix.py --table`)", "",
           "F1 / AP / AUPRO: whole-batch pixel metrics (%). excl: patches excluded (%); in-comm: share of each "
           "repeated group's images inside outlier communities; capture: the one capture rate "
           "(evaluation.consistency_rates) over the whole batch, and in brackets over the repeated images' "
           "own patches with their count of consistent patches (files from session 26 on; the rule reads "
           "this one where it exists). ok: the issue's acceptance rules for that cell.", ""]
    for path in sorted(results.glob("codegraph_matrix_*.json")):
        if not FILE.search(path.name) and not TABLED_TAG.search(path.name):
            continue
        res = json.loads(path.read_text())
        lines, _ = table_for(res)
        out += lines + [f"(from `{path.name}`{'' if res.get('complete') else ', incomplete'})", ""]
    target = results / "codegraph_matrix.md"
    target.write_text("\n".join(out) + "\n")
    print(f"wrote {target}")
    return target
