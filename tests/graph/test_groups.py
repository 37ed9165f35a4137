"""graph.groups: outlier communities of the JSON diagnostics as named repeated-defect groups."""

from __future__ import annotations

import json

from codegraph_ad.graph.groups import count_groups, describe_group, repeated_defect_groups

NAMES = [f"n{i}" for i in range(10)]


def _diagnostics() -> dict:
    """Two subsets (even and odd images) with one outlier community each; local indices."""
    even = {
        "images": [0, 2, 4, 6, 8],
        "n_patches": 10,
        "communities": [
            {"id": 0, "images": [0, 3], "size": 2, "density": 1.0, "outlier": False},
            {"id": 1, "images": [4, 1, 2], "size": 3, "density": 7.0, "outlier": True},
        ],
        "outlier_communities": [1],
        # the filtering record lists its images sorted, unlike the community
        "filtering": [{"community": 1, "images": [1, 2, 4], "n_excluded": 8, "excluded_per_image": [3, 0, 5],
                       "threshold": 1.2, "skipped": None}],
    }
    odd = {
        "images": [1, 3, 5, 7, 9],
        "n_patches": 10,
        "communities": [
            {"id": 0, "images": [2, 0], "size": 2, "density": 9.5, "outlier": True},
            {"id": 1, "images": [1, 3, 4], "size": 3, "density": 2.0, "outlier": False},
        ],
        "outlier_communities": [0],
        "filtering": [{"community": 0, "images": [0, 2], "n_excluded": 0, "excluded_per_image": [0, 0],
                       "threshold": None, "skipped": "no patch outside the community"}],
    }
    return {"method": "codegraph", "exclusion_rate": 0.08, "subsets": [even, odd]}


def test_groups_map_local_indices_to_names_densest_first():
    groups = repeated_defect_groups(_diagnostics(), NAMES)
    assert groups == [
        {"size": 2, "images": ["n5", "n1"], "indices": [5, 1], "density": 9.5, "excluded_patches": 0,
         "excluded_share": 0.0, "excluded_per_image": [0, 0], "subset": 1, "community": 0},
        {"size": 3, "images": ["n8", "n2", "n4"], "indices": [8, 2, 4], "density": 7.0, "excluded_patches": 8,
         "excluded_share": 8 / 30, "excluded_per_image": [5, 3, 0], "subset": 0, "community": 1},
    ]
    json.dumps(groups, allow_nan=False)  # the scores.json field must be strict JSON


def test_no_graph_stages_is_none_and_no_outlier_is_empty():
    assert repeated_defect_groups({"method": "musc"}, NAMES) is None
    assert repeated_defect_groups(None, NAMES) is None
    diag = _diagnostics()
    for sub in diag["subsets"]:
        sub["outlier_communities"] = []
        sub["filtering"] = []
        for c in sub["communities"]:
            c["outlier"] = False
    assert repeated_defect_groups(diag, NAMES) == []


def test_non_finite_density_is_null_and_sorts_last():
    diag = _diagnostics()
    diag["subsets"][1]["communities"][0]["density"] = float("inf")
    groups = repeated_defect_groups(diag, NAMES)
    assert [g["density"] for g in groups] == [7.0, None]


def test_single_subset_without_images_field_uses_batch_order():
    diag = _diagnostics()
    sub = diag["subsets"][0]
    del sub["images"]
    diag["subsets"] = [sub]
    (group,) = repeated_defect_groups(diag, NAMES)
    assert group["images"] == ["n4", "n1", "n2"] and group["excluded_per_image"] == [5, 3, 0]


def test_describe_group_names_every_member_and_the_excluded_patches():
    groups = repeated_defect_groups(_diagnostics(), NAMES)
    assert describe_group(groups[1]) == ("Repeated defect: 3 images share a repeated defect: n8, n2, n4 "
                                         "(8 patches excluded from the references)")
    one = {**groups[1], "excluded_patches": 1}
    assert describe_group(one, item="volume", unit="cubes").endswith("(1 cube excluded from the references)")
    many = {"size": 25, "images": [f"x{i}" for i in range(25)], "excluded_patches": 40}
    line = describe_group(many, max_names=3)
    assert line.startswith("Repeated defect: 25 images share a repeated defect: x0, x1, x2, ... and 22 more (")


def test_flags_call_a_group_a_repeated_defect_only_when_most_members_are_flagged():
    flags = [False] * 10
    flags[8] = flags[2] = True  # 2 of the 3-image group (n8, n2, n4); none of the pair (n5, n1)
    # the repeated defect comes first although the look-alike pair is denser (9.5 against 7.0)
    trio, pair = repeated_defect_groups(_diagnostics(), NAMES, anomalous=flags)
    assert trio["images"] == ["n8", "n2", "n4"] and pair["images"] == ["n5", "n1"]
    assert (trio["anomalous_images"], trio["kind"]) == (2, "repeated_defect")
    assert (pair["anomalous_images"], pair["kind"]) == (0, "look_alike")
    flags[5] = True  # one of two is half: a defect at the default share 0.5, not at 0.6

    def pair_kind(**kwargs):
        return next(g["kind"] for g in repeated_defect_groups(_diagnostics(), NAMES, anomalous=flags, **kwargs)
                    if g["images"] == ["n5", "n1"])

    assert pair_kind() == "repeated_defect"
    assert pair_kind(defect_share=0.6) == "look_alike"
    assert count_groups(repeated_defect_groups(_diagnostics(), NAMES, anomalous=flags, defect_share=0.6)) == (1, 1)
    assert count_groups(repeated_defect_groups(_diagnostics(), NAMES)) == (2, 0)  # no flags: as before
    assert count_groups(None) == (0, 0)


def test_describe_group_says_a_look_alike_group_is_not_a_defect():
    flags = [False] * 10
    flags[0] = True  # an image outside both groups: the decision flags something
    pair = repeated_defect_groups(_diagnostics(), NAMES, anomalous=flags)[0]  # both look-alike: densest first
    assert describe_group(pair) == ("Look-alike group, no repeated defect: 2 images are unusually alike, 0 of them "
                                    "flagged: n5, n1 (0 patches excluded from the references)")


def test_a_decision_that_flags_nothing_leaves_every_group_a_repeated_defect():
    groups = repeated_defect_groups(_diagnostics(), NAMES, anomalous=[False] * 10)
    assert [g["kind"] for g in groups] == ["repeated_defect", "repeated_defect"]
    assert [g["anomalous_images"] for g in groups] == [0, 0]
