"""CoDeGraph graph stages: endurance ratios, link selection, Leiden CPM, outliers, filtering.

Diagnostics (JSON summary, plots) live in ``codegraph_ad.graph.diagnostics`` and are not
imported here, so the numerics do not pull in matplotlib.
"""

from codegraph_ad.graph.communities import CommunityResult, detect_communities
from codegraph_ad.graph.endurance import endurance_ratios, reference_rank
from codegraph_ad.graph.filtering import FilterResult, ScoreFn, dependency_ratio, targeted_filtering
from codegraph_ad.graph.links import LinkSelection, select_links
from codegraph_ad.graph.pipeline import GraphResult, run_graph_stages
from codegraph_ad.graph.similarity_vectors import MutualSimilarity, mutual_similarity_vectors

__all__ = [
    "CommunityResult",
    "FilterResult",
    "GraphResult",
    "LinkSelection",
    "MutualSimilarity",
    "ScoreFn",
    "dependency_ratio",
    "detect_communities",
    "endurance_ratios",
    "mutual_similarity_vectors",
    "reference_rank",
    "run_graph_stages",
    "select_links",
    "targeted_filtering",
]
