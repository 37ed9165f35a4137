"""What the scoring commands print to the terminal: top scores, repeated defects, metrics.

Shared by the root command and the sub-commands of every area (volumes, suite, ...), which
import it from here rather than from the root cli.py.
"""

from __future__ import annotations

from codegraph_ad.graph.groups import describe_group, repeated_defect_groups


def print_score_rows(rows: list[dict], item: str = "image", limit: int = 20) -> None:
    """The highest-scoring rows first, as every scoring command prints them."""
    rows = sorted(rows, key=lambda r: -r["score"])
    print(f"{'score':>10}  {item}")
    for r in rows[:limit]:
        print(f"{r['score']:10.4f}  {r['name']}")
    if len(rows) > limit:
        print(f"... {len(rows) - limit} more in scores.csv")


def print_repeated_defects(diagnostics: dict | None, names: list[str], item: str = "image",
                           unit: str = "patches") -> None:
    """One line per repeated-defect group (CoDeGraph's outlier communities); nothing when none.

    Said in the summary because a repeated defect is the finding MuSc alone would miss.
    """
    for group in repeated_defect_groups(diagnostics, names) or []:
        print(describe_group(group, item, unit))


def format_metrics_table(metrics: dict) -> str:
    """Image and pixel metrics, one per line, in percent ("n/a" where undefined)."""
    rows = []
    for group in ("image", "pixel"):
        for k, v in metrics.get(group, {}).items():
            rows.append(f"{group + ' ' + k:<16} {'n/a' if v is None else f'{100 * v:6.2f}'}")
    return "\n".join(rows)


def flags_text(decision: dict, item: str = "images") -> str:
    """"N of M images flagged (threshold T, rule R, ...)": a batch decision (decision.py) in one line."""
    far = decision.get("false_alarm_rate")
    rate = f", false-alarm rate {far:g}" if isinstance(far, (int, float)) else ""
    return (f"{decision.get('n_flagged', 0)} of {decision.get('n_images', 0)} {item} flagged "
            f"(threshold {float(decision['threshold']):.4g}, rule {decision.get('rule', 'n/a')}{rate})")


def print_flags(decision: dict | None, item: str = "images") -> None:
    """The batch decision on the summary; nothing for a run without one."""
    if decision is not None:
        print(flags_text(decision, item))
