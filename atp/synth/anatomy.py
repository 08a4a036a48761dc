"""Procedural anatomy for the synthetic cohort: CT, contours and prescriptions (no dose).

`generate_anatomy` draws one patient of a site from a seed: body size, prescription
scheme, target volume (log-uniform in the site's ``target_volume_cc``), laterality,
target position and organ sizes, then paints superellipsoid / tube primitives into a CT
and a set of ROI masks on a grid with the world origin near the body centre.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Mapping

import numpy as np

from atp.cases.case import CaseError, PatientCase, Prescription, Roi
from atp.cases.grid import Grid
from atp.names import BODY, SITES, ptv_name
from atp.synth.shapes import fit_scale
from atp.synth.site_common import Canvas, log_uniform
from atp.synth.sites import SITE_BUILDERS

GENERATOR_VERSION = "1.0"

#: Standard deviation (HU) of the CT noise inside the body.
CT_NOISE_HU = 8.0

#: Relative tolerance of the target volume search (the grid quantises volumes further).
VOLUME_REL_TOL = 0.02


def _scheme(site: str, site_cfg: Mapping, rng: np.random.Generator,
            index: int | None = None) -> tuple[int, list, int]:
    src = f"site config '{site}'"
    schemes = site_cfg.get("prescriptions")
    if not schemes:
        raise CaseError(src, "prescriptions", "expected a non-empty list of schemes")
    idx = int(rng.integers(len(schemes)))  # drawn even when given: the anatomy stays the same
    if index is not None:
        if not 0 <= int(index) < len(schemes):
            raise CaseError(src, "prescriptions", f"scheme index {index} outside "
                            f"0..{len(schemes) - 1}")
        idx = int(index)
    scheme = schemes[idx]
    try:
        levels = sorted((float(v) for v in scheme["levels_gy"]), reverse=True)
        n_fx = int(scheme["n_fractions"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CaseError(src, f"prescriptions[{idx}]",
                        f"expected {{levels_gy: [...], n_fractions: n}}, got {scheme!r}") from exc
    if not levels or min(levels) <= 0 or n_fx < 1:
        raise CaseError(src, f"prescriptions[{idx}]", f"invalid scheme {scheme!r}")
    return idx, levels, n_fx


def _volume_range(site: str, site_cfg: Mapping) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in site_cfg["target_volume_cc"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CaseError(f"site config '{site}'", "target_volume_cc",
                        "expected [low, high] in cc") from exc
    if not 0 < lo <= hi:
        raise CaseError(f"site config '{site}'", "target_volume_cc", f"bad range [{lo}, {hi}]")
    return lo, hi


def generate_anatomy(site: str, *, seed: int, site_cfg: Mapping, spacing_mm: float | tuple = 6.0,
                     patient_id: str | None = None,
                     scheme_index: int | None = None) -> PatientCase:
    """One synthetic patient of ``site``: CT (HU), body, organs, targets and prescriptions.

    Parameters
    ----------
    site : str
        One of ``atp.names.SITES``.
    seed : int
        Non-negative; the same seed gives identical arrays.
    site_cfg : Mapping
        The parsed ``conf/site/<site>.yaml`` (``organs``, ``prescriptions``,
        ``target_volume_cc``) as a plain mapping.
    spacing_mm : float or tuple of float, optional
        Voxel size (mm), one number or (z, y, x); default 6 mm.
    patient_id : str, optional
        Default ``synth_<site>_<seed>``.
    scheme_index : int, optional
        The prescription scheme (index into ``prescriptions``); default drawn from the
        seed, all schemes equally likely (the cohort passes one assigned in the schemes'
        ``cases`` proportions).

    Returns
    -------
    PatientCase
        Validated; ``dose_gy`` is None. Targets are ``ptv_<cGy>``, one per dose level,
        disjoint (a lower level never contains a higher one); metadata holds ``source``,
        ``seed``, ``generator_version``, ``laterality``, ``target_volume_cc`` (achieved
        union volume), ``target_volume_requested_cc`` and ``rx_scheme``.
    """
    if site not in SITE_BUILDERS:
        raise ValueError(f"unknown site '{site}' (known: {list(SITES)})")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if site_cfg.get("name", site) != site:
        raise CaseError(f"site config '{site_cfg.get('name')}'", "name",
                        f"config is for '{site_cfg.get('name')}', asked for '{site}'")
    organs = [str(o) for o in site_cfg.get("organs", ())]
    rng = np.random.default_rng([int(seed), zlib.crc32(site.encode())])
    idx, levels, n_fx = _scheme(site, site_cfg, rng, scheme_index)
    lo, hi = _volume_range(site, site_cfg)
    target_cc = log_uniform(rng, lo, hi)

    spec = SITE_BUILDERS[site]
    grid = Grid.from_bounds(*spec.bounds_mm, spacing_mm=spacing_mm)
    canvas = Canvas(grid, rng)
    fit = functools.partial(fit_scale, voxel_cc=grid.voxel_volume_cc, rel_tol=VOLUME_REL_TOL)
    info = spec.build(canvas, levels_gy=levels, target_cc=target_cc, fit=fit)
    canvas.finish(noise_hu=CT_NOISE_HU)

    pid = patient_id if patient_id is not None else f"synth_{site}_{int(seed)}"
    missing = [o for o in organs if o not in canvas.rois]
    if missing:
        raise CaseError(f"patient {pid}", "rois",
                        f"the {site} generator cannot draw organs {missing}")
    targets = [ptv_name(v) for v in levels]
    rois = {BODY: Roi(*canvas.rois[BODY])}
    rois.update({o: Roi(*canvas.rois[o]) for o in organs})
    rois.update({t: Roi(*canvas.rois[t]) for t in targets})
    union = np.zeros(grid.shape, dtype=bool)
    for t in targets:
        union |= rois[t].mask
    achieved_cc = float(np.count_nonzero(union)) * grid.voxel_volume_cc
    metadata = {
        "source": "synthetic",
        "seed": int(seed),
        "generator_version": GENERATOR_VERSION,
        "laterality": info.pop("laterality", None),
        "target_volume_cc": round(achieved_cc, 3),
        "target_volume_requested_cc": round(target_cc, 3),
        "rx_scheme": {"index": idx, "levels_gy": levels, "n_fractions": n_fx},
        "spacing_mm": [float(v) for v in grid.spacing_mm],
        **info,
    }
    case = PatientCase(
        patient_id=pid, ct_hu=canvas.ct, spacing_mm=grid.spacing_mm, origin_mm=grid.origin_mm,
        rois=rois, prescriptions=tuple(Prescription(t, v, n_fx) for t, v in
                                       zip(targets, levels, strict=True)),
        dose_gy=None, site=site, metadata=metadata)
    return case.validate(source=f"synthetic {site} seed {seed}")
