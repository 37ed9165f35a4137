"""Which reference images each query image is compared with (exact, screened, or fixed K).

The engine stores minima per query in *slots*: ``dist[q, s, m]`` is patch m of image q
against the image ``slots[q, s]``. The exact plan keeps today's dense layout (slot s is
image s, the query's own slot at infinity), so nothing changes for it; a screened or fixed-K
plan keeps K sorted reference ids per query and the engine computes only those image pairs,
each unordered pair once for both directions (SCALE.md, "fixed-K references").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from codegraph_ad.errors import ConfigError, InputError


@dataclass(frozen=True)
class ReferencePlan:
    """Reference lists of one batch.

    n_images: N. refs: ``(N, K)`` int64, each row the sorted ids of that query's references
    (never the query itself), or None for the exact plan (every other image, dense slots).
    kind: how the lists were made ("exact", "screening", "fixed-k"), for diagnostics.
    """

    n_images: int
    refs: torch.Tensor | None = None
    kind: str = "exact"

    @property
    def dense(self) -> bool:
        return self.refs is None

    @property
    def n_slots(self) -> int:
        """Stored entries per query: N for the dense layout (self included), else K."""
        return self.n_images if self.refs is None else int(self.refs.shape[1])

    @property
    def n_references(self) -> int:
        """Real references per query: N - 1 exact, K otherwise."""
        return self.n_images - 1 if self.refs is None else int(self.refs.shape[1])

    def slot_images(self) -> torch.Tensor:
        """``(N, S)`` image id held by every slot (dense: slot s is image s)."""
        if self.refs is not None:
            return self.refs
        return torch.arange(self.n_images).view(1, -1).expand(self.n_images, -1)

    def slot_mask(self, reference_images: torch.Tensor | np.ndarray | None) -> torch.Tensor | None:
        """``(N, S)`` bool: slots whose image is among ``reference_images (N,)`` (None: all)."""
        if reference_images is None:
            return None
        ref = torch.as_tensor(np.asarray(reference_images, dtype=bool))
        if ref.shape != (self.n_images,):
            raise ValueError(f"reference_images must be ({self.n_images},), got {tuple(ref.shape)}")
        if self.refs is None:
            return ref.view(1, -1).expand(self.n_images, -1)
        return ref[self.refs]

    def unordered_pairs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The image pairs a sparse plan needs, each once: ``(a, b, slot_ab, slot_ba)``.

        a < b; slot_ab is b's slot in a's list (-1 when a does not list b), slot_ba a's slot
        in b's list (-1 likewise). Sorted by (a, b), so pairs of one left image are adjacent.
        """
        if self.refs is None:
            raise ValueError("the exact plan is computed as a dense block product, not as a pair list")
        n, k = self.refs.shape
        q = torch.arange(n).repeat_interleave(k)
        r = self.refs.reshape(-1)
        slot = torch.arange(k).repeat(n)
        lo, hi = torch.minimum(q, r), torch.maximum(q, r)
        key = lo * n + hi
        uniq, inverse = torch.unique(key, return_inverse=True)
        slot_ab = torch.full((uniq.numel(),), -1, dtype=torch.long)
        slot_ba = torch.full((uniq.numel(),), -1, dtype=torch.long)
        forward = q < r  # the query is the pair's left image
        slot_ab[inverse[forward]] = slot[forward]
        slot_ba[inverse[~forward]] = slot[~forward]
        return uniq // n, uniq % n, slot_ab, slot_ba

    def n_pairs(self) -> int:
        """Image pairs whose block product is computed (each serves both directions)."""
        if self.refs is None:
            return self.n_images * (self.n_images - 1) // 2
        return int(self.unordered_pairs()[0].numel())

    def summary(self) -> dict[str, int | str]:
        """What the run reports: how references were chosen and how much work that meant."""
        return {"plan": self.kind, "references_per_image": self.n_references, "image_pairs": self.n_pairs()}

    def subset(self, index: torch.Tensor) -> "ReferencePlan":
        """The plan of a sub-batch: exact plans only (a reference list may leave the subset)."""
        if self.refs is not None:
            raise ConfigError(f"a {self.kind} first pass cannot be cut into sub-batches (its reference lists "
                              "point outside them); score each sub-batch with its own plan")
        return ReferencePlan(int(index.numel()))


def exact_plan(n: int) -> ReferencePlan:
    return ReferencePlan(n)


def screening_plan(cls: torch.Tensor, percent: float) -> ReferencePlan:
    """Each query keeps its ``percent``% most [CLS]-similar other images (thesis 3.4.2)."""
    if not 0.0 < percent <= 100.0:
        raise ValueError(f"screening_percent must be in (0, 100], got {percent}")
    n = cls.shape[0]
    keep = max(1, int(np.ceil(percent / 100.0 * (n - 1))))
    if keep >= n - 1:
        return exact_plan(n)
    return ReferencePlan(n, _sorted(_nearest(cls, keep)), "screening")


def fixed_k_plan(descriptors: torch.Tensor, k: int, random_share: float, seed: int) -> ReferencePlan:
    """K references per query: its nearest images by ``descriptors`` plus a seeded random share.

    The random part keeps the reference population unbiased where a defect moves an
    image's global descriptor away from its look-alikes. K >= N - 1 is the exact plan.
    """
    n = descriptors.shape[0]
    if k < 2:
        raise ValueError(f"references must be >= 2, got {k}")
    if k >= n - 1:
        return exact_plan(n)
    n_random = int(round(random_share * k))
    n_near = k - n_random
    near = _nearest(descriptors, n_near) if n_near else torch.zeros((n, 0), dtype=torch.long)
    rand = _random_others(near, n, n_random, seed) if n_random else torch.zeros((n, 0), dtype=torch.long)
    return ReferencePlan(n, _sorted(torch.cat([near, rand], dim=1)), "fixed-k")


def _nearest(descriptors: torch.Tensor, k: int) -> torch.Tensor:
    """``(N, k)`` ids of each row's k most cosine-similar other rows: exact inner-product
    search (FAISS IndexFlatIP, 2 N^2 d flops: about a minute at N = 10^5 on 2 cores)."""
    import faiss

    x = torch.nn.functional.normalize(descriptors.float().cpu(), dim=1).numpy()
    x = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, found = index.search(x, k + 1)
    found = torch.from_numpy(found.astype(np.int64))
    own = found == torch.arange(x.shape[0]).view(-1, 1)
    # drop the query itself (normally first; a duplicate image may tie with it), keep k others
    order = torch.argsort(own.to(torch.int8), dim=1, stable=True)
    return torch.gather(found, 1, order)[:, :k]


def _random_others(taken: torch.Tensor, n: int, count: int, seed: int) -> torch.Tensor:
    """``(N, count)`` seeded random ids per row, distinct, never the row itself nor in ``taken``."""
    rng = np.random.default_rng(seed)
    taken_np = taken.numpy()
    out = np.empty((n, count), dtype=np.int64)
    for q in range(n):  # one small draw per image, not per patch
        banned = np.concatenate([taken_np[q], [q]])
        pool_size = n - np.unique(banned).size
        draw = rng.choice(n, size=min(n, count + banned.size), replace=False)
        picked = draw[~np.isin(draw, banned)][:count]
        if picked.size < count:  # tiny batches: fall back to the whole remaining pool
            pool = np.setdiff1d(np.arange(n), banned)
            picked = rng.choice(pool, size=min(count, pool_size), replace=False)
        out[q] = picked
    return torch.from_numpy(out)


def _sorted(refs: torch.Tensor) -> torch.Tensor:
    return torch.sort(refs, dim=1).values.contiguous()


def planned_slots(n: int, screening_percent: float, references: int | None) -> int | None:
    """Entries per query the plan for these settings will store (None: the exact plan),
    known before any feature is compared, for the memory estimate."""
    if references is not None:
        return None if references >= n - 1 else int(references)
    keep = max(1, int(np.ceil(screening_percent / 100.0 * (n - 1))))
    return None if screening_percent >= 100.0 or keep >= n - 1 else keep


def plan_for(n: int, cls: torch.Tensor | None, pooled: torch.Tensor | None, screening_percent: float,
             references: int | None, random_references: float, seed: int) -> ReferencePlan:
    """The plan an engine configuration asks for. Fixed K takes precedence over screening;
    its descriptors are the [CLS] vectors, else mean-pooled patch tokens."""
    if references is not None:
        desc = cls if cls is not None else pooled
        if desc is None:
            raise ConfigError("fixed-K references need a global descriptor per image ([CLS] or pooled tokens)")
        return fixed_k_plan(desc, int(references), random_references, seed)
    if screening_percent < 100.0:
        if cls is None:
            raise InputError(f"[CLS] screening (screening_percent={screening_percent}) needs the [CLS] vector "
                             "of every image, and these features have none: pass cls=(N, C) with the "
                             "features, or turn that setting off")
        return screening_plan(cls, screening_percent)
    return exact_plan(n)
