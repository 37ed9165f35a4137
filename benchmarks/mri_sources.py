"""Healthy source brains for the volume benchmark's cohorts.

shared/data/mri holds two skull-stripped healthy brains (colin27 ``ch2bet``, the MNI152 2009a
T1) and two IXI T1 scans that are not skull-stripped. A cohort built from two brains repeats
each brain's anatomy in half of its volumes, which the graph stages read as dense
communities of near-duplicates (docs/volumes.md). The IXI scans are brain-extracted here, the
way an atlas-based skull stripper does it: colin27 *with* skull (``ch2``) is registered
affinely to the scan (Mattes mutual information, SimpleITK), refined twice with the metric
restricted to the dilated brain, and colin27's brain mask (``ch2bet > 0``) is warped along.
The stripped volumes go to the benchmark's work folder, never into the repository (the data
licence forbids copying it).

SimpleITK is a benchmark-only dependency: ``pip install SimpleITK``.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from common import DATA

MRI = DATA / "mri"
STRIPPED = {
    "colin27": MRI / "colin27" / "ch2bet.nii.gz",
    "mni152": MRI / "mni152_2009a_sym" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
}
UNSTRIPPED = {
    "ixi012": MRI / "ixi_small" / "IXI012-HH-1211_T1.nii.gz",
    "ixi015": MRI / "ixi_small" / "IXI015-HH-1258_T1.nii.gz",
}
ATLAS_HEAD = MRI / "colin27" / "ch2.nii.gz"
ATLAS_BRAIN = MRI / "colin27" / "ch2bet.nii.gz"
MASK_DILATION_VOX = 5  # the refinement metric sees the brain plus ~1 cm (2 mm IXI voxels)


def _register(fixed, moving, transform, shrink: list[int], sigmas: list[float], iterations: int,
              sampling: float, moving_initial=None, fixed_mask=None):
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(sampling, seed=1)
    if fixed_mask is not None:
        reg.SetMetricFixedMask(fixed_mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(1.0, 1e-4, iterations, relaxationFactor=0.7)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(sigmas)
    if moving_initial is not None:
        reg.SetMovingInitialTransform(moving_initial)
    reg.SetInitialTransform(transform, inPlace=False)
    return reg.Execute(fixed, moving)


def atlas_brain_mask(scan: Path, refinements: int = 2):
    """colin27's brain mask warped onto ``scan`` (a SimpleITK uint8 image on the scan's grid)."""
    try:
        import SimpleITK as sitk
    except ImportError as exc:  # pragma: no cover - benchmark-only dependency
        raise SystemExit("brain-extracting the IXI sources needs SimpleITK: pip install SimpleITK") from exc

    fixed = sitk.ReadImage(str(scan), sitk.sitkFloat32)
    moving = sitk.ReadImage(str(ATLAS_HEAD), sitk.sitkFloat32)
    brain = sitk.Cast(sitk.ReadImage(str(ATLAS_BRAIN), sitk.sitkFloat32) > 0, sitk.sitkFloat32)
    start = sitk.CenteredTransformInitializer(fixed, moving, sitk.AffineTransform(3),
                                              sitk.CenteredTransformInitializerFilter.MOMENTS)
    transform = _register(fixed, moving, start, [4, 2, 1], [2, 1, 0], 300, 0.1)
    centre = fixed.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in fixed.GetSize()])
    for _ in range(refinements):
        mask = sitk.Resample(brain, fixed, transform, sitk.sitkLinear, 0.0) >= 0.5
        step = sitk.AffineTransform(3)
        step.SetCenter(centre)
        step = _register(fixed, moving, step, [2, 1], [1, 0], 200, 0.3, moving_initial=transform,
                         fixed_mask=sitk.BinaryDilate(mask, [MASK_DILATION_VOX] * 3))
        transform = sitk.CompositeTransform([transform, step])
    return sitk.Resample(brain, fixed, transform, sitk.sitkLinear, 0.0) >= 0.5


def stripped_source(name: str, work: Path) -> Path:
    """Path of a skull-stripped healthy source volume; IXI ones are extracted once into ``work``."""
    if name in STRIPPED:
        return STRIPPED[name]
    scan = UNSTRIPPED[name]
    out = work / "sources" / f"{name}_brain.nii.gz"
    if out.exists():
        return out
    import SimpleITK as sitk

    mask = sitk.GetArrayFromImage(atlas_brain_mask(scan)).transpose(2, 1, 0) > 0  # sitk is z, y, x
    img = nib.load(scan)
    data = np.asarray(img.dataobj, dtype=np.float32)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part.nii.gz")
    nib.save(nib.Nifti1Image(np.where(mask, data, 0.0).astype(np.float32), img.affine), tmp)
    tmp.replace(out)
    return out


SOURCE_NAMES = (*STRIPPED, *UNSTRIPPED)
