"""Every tunable of the pipeline, in one place, named after docs/SPEC.md.

Each stage reads only its own dataclass; a run's JSON output stores all of them so that a
result can be reproduced exactly. Values marked [reconstructed] in SPEC are backed by the
sweeps in ``benchmarks/`` (see docs/benchmarks.md).
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal

from codegraph_ad.errors import ConfigError
from codegraph_ad.registry import BACKBONES, METHODS


def _require(ok: bool, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"{name} must be {rule}, got {value!r}")


@dataclass(frozen=True)
class FeatureConfig:
    """How images become multi-layer patch tokens (SPEC section 1)."""

    backbone: str = "dinov2_vits14_imgfocus"
    # 448 px: the bottle benchmark (docs/benchmarks.md) met every pixel target at 448 and
    # missed pixel F1 at 224; 518 costs 1.8x the scoring time for no measured gain.
    image_size: int = 448
    # 1-based blocks; ViT-S/B use 3/6/9/12 (SPEC section 1).
    layers: tuple[int, ...] = (3, 6, 9, 12)
    # Raw block outputs beat final-norm tokens on the embedded ViT-S (issue 2 numbers:
    # pixel F1 74.7 vs 69.8 at 224 px), so the final LayerNorm is off by default.
    final_norm: bool = False
    checkpoint: str | None = None
    batch_size: int = 8

    def __post_init__(self) -> None:
        # the registry loads the built-in backbones on first use; user entries must be
        # registered (codegraph_ad.backbones.register_backbone) before the config is built
        _require(isinstance(self.backbone, str) and self.backbone in BACKBONES, "backbone", self.backbone,
                 f"a registered backbone ({', '.join(BACKBONES.names())})")
        _require(self.image_size > 0, "image_size", self.image_size, "positive")
        _require(len(self.layers) > 0 and all(i >= 1 for i in self.layers), "layers", self.layers,
                 "a non-empty list of 1-based block indices")
        _require(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")


@dataclass(frozen=True)
class LNAMDConfig:
    """Local neighbourhood aggregation degrees r (SPEC section 2)."""

    degrees: tuple[int, ...] = (1, 3, 5)

    def __post_init__(self) -> None:
        _require(len(self.degrees) > 0 and all(r >= 1 and r % 2 == 1 for r in self.degrees), "degrees",
                 self.degrees, "a non-empty list of positive odd integers")


@dataclass(frozen=True)
class MSMConfig:
    """Mutual scoring: mean of the K = max(1, ceil(q (N-1))) smallest image distances."""

    q: float = 0.3

    def __post_init__(self) -> None:
        _require(0.0 < self.q <= 1.0, "q", self.q, "in (0, 1]")


@dataclass(frozen=True)
class RsCINConfig:
    """Image-score re-weighting by [CLS] similarity (MuSc; SPEC section 7)."""

    # Off by default: on the bottle benchmark RsCIN lowered image AUROC at 224 px
    # (99.84 vs 100.0 for the plain max of the map) and left it at 100.0 at 448 px
    # (docs/benchmarks.md). MuSc's k_list for MVTec-like data when it is turned on.
    enabled: bool = False
    k_list: tuple[int, ...] = (1, 2, 3)

    def __post_init__(self) -> None:
        _require(len(self.k_list) > 0 and all(k >= 1 for k in self.k_list), "k_list", self.k_list,
                 "a non-empty list of positive integers")


@dataclass(frozen=True)
class EngineConfig:
    """Mutual-similarity engine knobs (SPEC section 8, issue 4)."""

    # fp32 stays the default: exact distances, the same scores on every machine. "fast"
    # (int8 on AVX-512 VNNI CPUs) scored bottle at 448 px 2.3x faster with pixel metrics
    # within 0.02 points (docs/engine.md), but which mode it picks depends on the machine.
    precision: Literal["fp32", "bf16", "int8", "fast"] = "fp32"
    memory_budget_mb: int | None = None  # None: 70% of physical memory (engine/memory.py)
    threads: int | None = None  # None: all cores
    subsets: int = 1  # subset division s
    screening_percent: float = 100.0  # [CLS] screening p
    seed: int = 0

    def __post_init__(self) -> None:
        _require(self.precision in ("fp32", "bf16", "int8", "fast"), "precision", self.precision,
                 "one of fp32, bf16, int8, fast")
        _require(self.memory_budget_mb is None or self.memory_budget_mb > 0, "memory_budget_mb",
                 self.memory_budget_mb, "positive")
        _require(self.threads is None or self.threads >= 0, "threads", self.threads, ">= 0")
        _require(self.subsets >= 1, "subsets", self.subsets, ">= 1")
        _require(0.0 < self.screening_percent <= 100.0, "screening_percent", self.screening_percent,
                 "in (0, 100]")


@dataclass(frozen=True)
class GraphConfig:
    """CoDeGraph stages 1-3 (SPEC sections 4-7)."""

    # Defaults chosen on the CoDeGraph matrix (benchmarks/codegraph_matrix.py, docs/codegraph.md):
    # clean and repeated-defect batches of two categories at 224 and 448 px, judged against
    # MuSc q = 0.3. The thesis values stay available as options.
    # [thesis: 0.3 N to 0.7 N work] 0.5: a group larger than k has no burnout cliff before
    # rank k, so 0.3 N cannot see a repeated defect in more than ~30% of the batch.
    k_fraction: float = 0.5
    # [SPEC 0.5] At 0 the links are the smallest plain ratios, which on bottle at 224 px are
    # normal regions of look-alike images (53-74% of the links); transformed copies of a defect are
    # not near-duplicates there (rank-1 ratio 0.45 vs 0.29 for the 1st percentile of normal
    # patches). dbar^-0.5 favours the larger distances of defect patches: 74% of links then
    # come from the copies' defects and they form one community.
    alpha: float = 0.5
    links_per_batch: int | None = None  # None: N links per batch [reconstructed]
    target_coverage: float = 0.95  # [reconstructed]
    kappa: float = 3.0  # Tukey fence multiplier [reconstructed]
    # [extension] judge each community against the quartiles of the other communities
    # (graph/communities.py); False: one fence over all of them, the candidate included (SPEC).
    leave_one_out_fence: bool = False
    # [reconstructed] 2 (SPEC 6.2): every community of two or more images enters the quartiles
    # and may be flagged; 3 leaves pairs out of both (graph/communities.py; volumes use 3).
    min_community_size: int = 2
    # [reconstructed] how a community's density is normalised: "per_member" (internal weight
    # over |c|) by default; "per_pair" (SPEC 6.2, over |c|(|c|-1)/2) falls as 1/|c| for a
    # group whose images each send a fixed number of links, so a 29-copy community (45.6)
    # scored under 3-image communities (45.3) and a pair (32) and was never flagged.
    community_density: Literal["per_pair", "per_member"] = "per_member"
    resolution_percentile: float = 25.0  # CPM gamma = this percentile of edge weights [thesis]
    # [extension] True: one dependency ratio against the base set without every outlier
    # community at once; False: Algorithm 2 visits them one by one (thesis), and a group that
    # Leiden split keeps vouching for itself through its other parts (graph/filtering.py).
    joint_filtering: bool = True
    # [reconstructed] 99.9: on SynCA bottle at 448 px it won back MuSc's whole loss (F1 81.9,
    # AP 85.7, AUPRO 95.2) and excluded 0.37% of the clean batch, against 79.7 / 84.1 / 94.3
    # and 2.27% at 99 (benchmarks/results/synca_codegraph_sweep_448.json).
    dependency_percentile: float = 99.9
    graph_degree: int = 1  # which r feeds the graph [reconstructed]
    # [extension] None: the rank-wise mean over all extracted layers feeds the graph [thesis];
    # a tuple of 0-based indices into FeatureConfig.layers restricts it to those layers
    # (docs/codegraph.md: block 9 alone puts noisy copies in the community, at a cost).
    graph_layers: tuple[int, ...] | None = None
    # [thesis 0.1] 0.3, MuSc's own q: with nothing repeated, q = 0.1 cost 3 points of pixel F1
    # and 7 of AP on MPDD metal_plate; once the copies are out of the references, 0.3 loses
    # nothing on the repeated batches (docs/codegraph.md).
    final_q: float = 0.3
    leiden_seed: int = 0

    def __post_init__(self) -> None:
        _require(0.0 < self.k_fraction < 1.0, "k_fraction", self.k_fraction, "in (0, 1)")
        _require(self.alpha >= 0.0, "alpha", self.alpha, ">= 0")
        _require(self.links_per_batch is None or self.links_per_batch >= 1, "links_per_batch",
                 self.links_per_batch, ">= 1")
        _require(0.0 < self.target_coverage <= 1.0, "target_coverage", self.target_coverage, "in (0, 1]")
        _require(self.kappa >= 0.0, "kappa", self.kappa, ">= 0")
        _require(self.community_density in ("per_pair", "per_member"), "community_density",
                 self.community_density, "per_pair or per_member")
        _require(0.0 < self.resolution_percentile <= 100.0, "resolution_percentile", self.resolution_percentile,
                 "in (0, 100]")
        _require(self.min_community_size >= 2, "min_community_size", self.min_community_size, ">= 2")
        _require(0.0 < self.dependency_percentile <= 100.0, "dependency_percentile",
                 self.dependency_percentile, "in (0, 100]")
        _require(0.0 < self.final_q <= 1.0, "final_q", self.final_q, "in (0, 1]")
        _require(self.graph_layers is None or (len(self.graph_layers) > 0 and min(self.graph_layers) >= 0
                 and len(set(self.graph_layers)) == len(self.graph_layers)),
                 "graph_layers", self.graph_layers, "None or distinct indices >= 0")


@dataclass(frozen=True)
class RunConfig:
    """A whole detection run."""

    # A name in codegraph_ad.registry.METHODS: the built-ins, or a method a user registered.
    method: str = "codegraph"
    features: FeatureConfig = field(default_factory=FeatureConfig)
    lnamd: LNAMDConfig = field(default_factory=LNAMDConfig)
    msm: MSMConfig = field(default_factory=MSMConfig)
    rscin: RsCINConfig = field(default_factory=RsCINConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    graph: GraphConfig = field(default_factory=GraphConfig)

    def __post_init__(self) -> None:
        names = METHODS.names()
        _require(self.method in names, "method", self.method, f"one of the registered methods ({', '.join(names)})")


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    return asdict(config)


def config_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Rebuild a (nested) config dataclass from ``config_to_dict`` output."""
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.default_factory is not MISSING and is_dataclass(f.default_factory()):
            value = config_from_dict(type(f.default_factory()), value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)
