"""What the scoring commands print to the terminal: top scores, repeated defects, metrics, and
the closing summary a person reads in five seconds.

Shared by the root command and the sub-commands of every area (volumes, suite, ...), which
import it from here rather than from the root cli.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from codegraph_ad.graph.groups import count_groups, describe_group

# How many of the highest scores the scoring commands list; the rest are in scores.csv.
TOP_SCORES = 5


def print_score_rows(rows: list[dict], item: str = "image", limit: int = 20) -> None:
    """The highest-scoring rows first, as every scoring command prints them."""
    rows = sorted(rows, key=lambda r: -r["score"])
    print(f"{'score':>10}  {item}")
    for r in rows[:limit]:
        print(f"{r['score']:10.4f}  {r['name']}")
    if len(rows) > limit:
        print(f"... {len(rows) - limit} more in scores.csv")


def print_repeated_defects(groups: Sequence[Mapping[str, Any]] | None, item: str = "image",
                           unit: str = "patches") -> None:
    """One line per CoDeGraph group (``graph.groups.repeated_defect_groups``: repeated defects,
    then look-alike groups); nothing when none.

    Said in the summary because a repeated defect is the finding MuSc alone would miss.
    """
    for group in groups or []:
        print(describe_group(group, item, unit))


def format_duration(seconds: float) -> str:
    """``12.3 s``, ``4 min 05 s``, ``1 h 02 min``: as precise as a person needs."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _count(n: int, what: str) -> str:
    return f"{n} {what if n == 1 else what + 's'}"


def run_summary(n_scored: int, seconds: float, out_dir: Path | None, *, flagged: int | None = None,
                groups: int = 0, look_alikes: int = 0, skipped: int = 0, item: str = "image") -> list[str]:
    """The closing lines of a scoring command: what was scored, what needs a look, where to look.

    flagged: images the run decided are anomalous without labels, when the run makes that
    decision (None: the line says nothing about flags). groups / look_alikes: repeated-defect
    groups and look-alike groups found (their own lines come from ``print_repeated_defects``).
    skipped: unreadable files left out with --skip-bad.
    """
    parts = [f"{_count(n_scored, item)} scored in {format_duration(seconds)}"]
    if flagged is not None:
        parts.append(f"{flagged} flagged")
    if groups:
        parts.append(_count(groups, "repeated-defect group"))
    if look_alikes:
        parts.append(_count(look_alikes, "look-alike group"))
    if skipped:
        parts.append(f"{_count(skipped, 'unreadable file')} skipped")
    lines = [", ".join(parts)]
    if out_dir is not None:
        report = Path(out_dir) / "report.html"
        lines.append(f"report: {report}" if report.is_file() else f"results: {out_dir} (no report.html)")
    return lines


def print_run_summary(n_scored: int, seconds: float, out_dir: Path | None, *, flagged: int | None = None,
                      groups: Sequence[Mapping[str, Any]] | None = None, skipped: int = 0,
                      item: str = "image") -> None:
    """Print ``run_summary``'s lines after a blank one, last on the terminal where the eye lands.

    groups: the run's CoDeGraph groups (None or empty: none found or no graph stages)."""
    defects, look_alikes = count_groups(groups)
    print()
    for line in run_summary(n_scored, seconds, out_dir, flagged=flagged, groups=defects, look_alikes=look_alikes,
                            skipped=skipped, item=item):
        print(line)


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
