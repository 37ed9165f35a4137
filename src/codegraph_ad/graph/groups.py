"""Repeated-defect groups: CoDeGraph's outlier communities, named in batch terms.

A flagged (outlier) community is a set of images that share a defect dense enough to be
scored as normal by MuSc; CoDeGraph removes its patches from the references. The method's
diagnostics describe it per subset with subset-local indices; users want "these images
share a defect", with names. This module is the one place that translation is made
(scores.json, the terminal summary and report.html all read it), and it needs only the
JSON diagnostics, so old run folders get the same answer as new ones.

A dense community is not always a defect: a batch that is mostly good parts can hold a
sub-population of good images more alike than the rest (the same lighting or pose), dense
enough for the Tukey fence (MPDD metal_plate, 80 good + 9 defective plates at 448 px: 18 good
plates, none flagged, docs/codegraph.md). What tells them apart is the outcome of the method
itself: once a repeated defect's copies no longer vouch for each other, its images score as
anomalous and the batch decision flags them; a group of look-alike good images stays under
the threshold. So when the run's per-image flags are given, each group says which it is
(unless the decision flagged no image at all, which says nothing about the group).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from codegraph_ad.config import DecisionConfig

REPEATED_DEFECT = "repeated_defect"
LOOK_ALIKE = "look_alike"


def is_look_alike(flagged_members: int, size: int, any_flagged: bool,
                  defect_share: float = DecisionConfig.group_defect_share) -> bool:
    """A community is a look-alike group when fewer than ``defect_share`` of its ``size``
    images are flagged; a decision that flags no image at all (``any_flagged`` False: a
    mixture fit that missed the normal mode, bottle 224 px a+b_15) tells nothing about it."""
    return any_flagged and flagged_members < defect_share * size


def json_number(x: Any) -> float | None:
    """JSON has no inf/nan: they become null."""
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def repeated_defect_groups(diagnostics: Mapping[str, Any] | None, names: Sequence[str],
                           anomalous: Sequence[bool] | None = None,
                           defect_share: float = DecisionConfig.group_defect_share) -> list[dict[str, Any]] | None:
    """Every outlier community of a run's diagnostics with global names: repeated defects
    first, each kind densest first.

    diagnostics: ``ScoreResult.diagnostics`` (or ``scores.json["diagnostics"]``); each of its
        ``subsets`` carries ``communities`` (subset-local ``images``), ``images`` (the
        subset's global indices), ``n_patches`` and ``filtering`` records.
    names: the run's image names in global order.
    anomalous: the run's per-image flags (the batch decision) in global order, or None when
        the run made none.
    defect_share: the share of a group's images that must be flagged for it to be a
        repeated defect (``DecisionConfig.group_defect_share``).

    Returns None when the run had no graph stages (MuSc: "not looked" is not "none found"),
    else a list of ``{"size", "images" (names), "indices" (global), "density",
    "excluded_patches", "excluded_share" (of the group's patches), "excluded_per_image"
    (aligned with images), "subset", "community"}``, ``"restored": True`` where
    ``GraphConfig.restore_look_alikes`` put the group's patches back, and with flags also
    ``"anomalous_images"`` (how many members are flagged) and ``"kind"``
    (``REPEATED_DEFECT`` or ``LOOK_ALIKE``).
    """
    subsets = [s for s in (diagnostics or {}).get("subsets", []) or [] if isinstance(s, Mapping) and "communities" in s]
    if not subsets:
        return None
    groups: list[dict[str, Any]] = []
    for si, sub in enumerate(subsets):
        index = [int(i) for i in sub.get("images", range(len(names)))]
        flagged = {int(c) for c in sub.get("outlier_communities", [])}
        records = {int(r["community"]): r for r in sub.get("filtering", []) if "community" in r}
        n_patches = int(sub.get("n_patches", 0) or 0)
        for comm in sub["communities"]:
            cid = int(comm["id"])
            if not (comm.get("outlier") or cid in flagged):
                continue
            local = [int(j) for j in comm["images"]]
            rec = records.get(cid, {})
            # The record lists its images sorted (np.unique), not necessarily in community order.
            per = {int(j): int(k) for j, k in zip(rec.get("images", []), rec.get("excluded_per_image", []))}
            per_image = [per.get(j, 0) for j in local]
            excluded = int(rec.get("n_excluded", sum(per_image)))
            total = len(local) * n_patches
            groups.append({
                "size": len(local),
                "images": [str(names[index[j]]) for j in local],
                "indices": [index[j] for j in local],
                "density": json_number(comm.get("density")),
                "excluded_patches": excluded,
                "excluded_share": excluded / total if total else 0.0,
                "excluded_per_image": per_image,
                "subset": si,
                "community": cid,
            })
            if rec.get("restored"):  # GraphConfig.restore_look_alikes put its patches back
                groups[-1]["restored"] = True
            if anomalous is not None:
                flagged_members = sum(bool(anomalous[i]) for i in groups[-1]["indices"])
                groups[-1]["anomalous_images"] = flagged_members
                look_alike = is_look_alike(flagged_members, len(local), any(anomalous), defect_share)
                groups[-1]["kind"] = LOOK_ALIKE if look_alike else REPEATED_DEFECT
    # repeated defects first, each kind densest first: the order every reader shows them in
    groups.sort(key=lambda g: (not is_repeated_defect(g), -(g["density"] if g["density"] is not None else -math.inf)))
    return groups


def is_repeated_defect(group: Mapping[str, Any]) -> bool:
    """A group reported as a repeated defect; groups stored before ``kind`` existed count as one."""
    return group.get("kind", REPEATED_DEFECT) == REPEATED_DEFECT


def count_groups(groups: Sequence[Mapping[str, Any]] | None) -> tuple[int, int]:
    """(repeated defects, look-alike groups) among a run's groups."""
    defects = sum(is_repeated_defect(g) for g in groups or [])
    return defects, len(groups or []) - defects


_SINGULAR = {"patches": "patch", "cubes": "cube"}


def describe_group(group: Mapping[str, Any], item: str = "image", unit: str = "patches", max_names: int = 20) -> str:
    """One line naming a group, as the terminal summary prints it (volumes: item "volume",
    unit "cubes")."""
    names = list(group["images"])
    shown = ", ".join(names[:max_names])
    if len(names) > max_names:
        shown += f", ... and {len(names) - max_names} more"
    n = int(group["size"])
    plural = item if n == 1 else item + "s"
    verb = "has" if n == 1 else "share"
    k = int(group["excluded_patches"])
    units = unit if k != 1 else _SINGULAR.get(unit, unit)
    excluded = f"({k} {units} excluded from the references)"
    if not is_repeated_defect(group):
        return (f"Look-alike group, no repeated defect: {n} {plural} are unusually alike, "
                f"{int(group.get('anomalous_images', 0))} of them flagged: {shown} {excluded}")
    return f"Repeated defect: {n} {plural} {verb} a repeated defect: {shown} {excluded}"
