"""How different are two builder subjects of one source brain, next to two real brains?

    python benchmarks/cohort_deformation.py --deformation-mm 2.5 5 8
writes benchmarks/results/cohort_deformation_d168.json.

For each deformation amplitude, a small cohort of healthy subjects, ``--per-source`` from each
of the four source brains (colin27, MNI152 2009a, IXI012, IXI015; the IXI scans brain-extracted
by mri_sources.py), is tokenised at D = 168 like the volume benchmark. For every whole-brain
cube of every subject, its nearest-cube distance (mean over the layers) to the subjects of
each source; the medians form a source-by-source table whose diagonal is same-source copies.
IXI012 and IXI015 are two real people scanned alike, so their cross distance is a yardstick
for "two distinct subjects": the builder's deformation should put same-source copies about
that far apart, or every normal cube has near-duplicates and the graph stages group volumes
by source brain (docs/volumes.md).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import RESULTS, machine_info
from mri_sources import SOURCE_NAMES, stripped_source

from codegraph_ad.api import versions
from codegraph_ad.config import LNAMDConfig
from codegraph_ad.engine.mutual import pair_minima
from codegraph_ad.io.atomic import write_json
from codegraph_ad.methods.base import feature_maps
from codegraph_ad.volumes.api import read_cohort
from codegraph_ad.volumes.cohort import build_cohort
from codegraph_ad.volumes.config import CohortConfig, VolumeConfig
from codegraph_ad.volumes.nifti import nifti_stem
from codegraph_ad.volumes.pipeline import build_tokens, load_volume_backbone, prepare_volumes, token_batch


def layer_mean_minima(batch) -> torch.Tensor:
    """(N, N, M) nearest-cube distances averaged over the layers."""
    total = None
    n_layers = 0
    for _, _, feats in feature_maps(batch.features, LNAMDConfig(degrees=(1,))):
        d = pair_minima(feats.float()).dist
        total = d if total is None else total + d
        n_layers += 1
    return total / n_layers


def source_distances(dist: torch.Tensor, sources: list[str], whole: np.ndarray) -> dict[str, dict[str, float]]:
    """[a][b]: median over subjects of source a of the median over their whole cubes of the
    nearest-cube distance to the subjects of source b (the subject itself left out)."""
    src = np.asarray(sources)
    names = sorted(set(sources))
    n = len(src)
    out: dict[str, dict[str, float]] = {}
    for a in names:
        row: dict[str, list[float]] = {b: [] for b in names}
        for q in np.flatnonzero(src == a):
            for b in names:
                refs = torch.from_numpy((src == b) & (np.arange(n) != q))
                row[b].append(float(np.median(dist[q][refs].min(dim=0).values.numpy()[whole[q]])))
        out[a] = {b: round(float(np.median(v)), 4) for b, v in row.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--deformation-mm", type=float, nargs="+", default=[2.5, 5.0, 8.0])
    ap.add_argument("--smoothness-mm", type=float, default=CohortConfig.smoothness_mm)
    ap.add_argument("--per-source", type=int, default=3)
    ap.add_argument("--size", type=int, default=168)
    ap.add_argument("--slice-stride", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "codegraph_cohort_deformation")
    a = ap.parse_args()

    sources = {name: stripped_source(name, a.work) for name in SOURCE_NAMES}
    by_path = {str(p): name for name, p in sources.items()}
    base = VolumeConfig(size=a.size, slice_stride=a.slice_stride)
    backbone = load_volume_backbone(base)
    rows = []
    for mm in a.deformation_mm:
        t0 = time.perf_counter()
        cfg = CohortConfig(sources=tuple(str(p) for p in sources.values()), n_healthy=a.per_source * len(sources),
                           n_random=0, n_consistent=0, deformation_mm=mm, smoothness_mm=a.smoothness_mm, seed=0)
        folder = a.work / f"deformation_{mm:g}"
        build_cohort(folder, cfg, overwrite=True, progress=False)
        paths, _, _ = read_cohort(folder)
        subjects = {s["name"]: s for s in json.loads((folder / "cohort.json").read_text())["subjects"]}
        names = [by_path[subjects[nifti_stem(p)]["source"]] for p in paths]
        volumes = prepare_volumes(paths, base, progress=False)
        batch = token_batch(volumes, build_tokens(volumes, base, backbone, progress=False), base)
        medians = source_distances(layer_mean_minima(batch), names, batch.brain_share >= 0.999)
        rows.append({"deformation_mm": mm, "smoothness_mm": a.smoothness_mm, "medians": medians,
                     "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    out = {"benchmark": "cohort_deformation", "per_source": a.per_source, "size": a.size,
           "slice_stride": a.slice_stride, "rows": rows,
           "note": "medians[a][b]: median over the subjects of source a of the median over their whole-brain "
                   "cubes of the nearest-cube distance (layer mean) to the subjects of source b; the diagonal "
                   "is same-source copies, ixi012 vs ixi015 two real, distinct people scanned alike",
           "versions": versions(), "machine": machine_info()}
    write_json(RESULTS / f"cohort_deformation_d{a.size}.json", out)
    print(f"wrote {RESULTS / f'cohort_deformation_d{a.size}.json'}")


if __name__ == "__main__":
    main()
