"""6 MV photon pencil-beam engine: a fast, commissioned beamlet dose-influence matrix.

Per beam (all voxels at once, numpy/scipy only):

1. beamlets: the ``bixel_mm`` squares at the isocentre plane covering the beam's-eye view
   of the targets dilated by ``target_margin_mm`` (or a fixed ``Beam.aperture_mm``);
2. rows: dose-grid voxels of the mask whose BEV position lies within
   ``lateral_cutoff_mm`` of the open beamlets;
3. radiological depth: the CT's relative electron density (zero outside the body) is
   sampled (trilinear) on a divergent beam-aligned grid of rays through the source,
   integrated along each ray (trapezoid rule, path length corrected for the ray's
   obliquity) and interpolated back to the voxels;
4. entries: the kernel of `atp.dose.kernel` for the ``(2K+1)^2`` beamlets around each
   voxel's own beamlet, keeping those open, within the cutoff and above the threshold;
5. a CSC block (float32 values, int32 indices) per beam, stacked column-wise without
   ever forming int64 triplets of the whole matrix.

Limits of the model (a pencil beam): no lateral electron transport changes in low
density (lung) beyond the depth scaling, no collimator rotation, no MLC leakage or
tongue-and-groove, a generic 6 MV beam (``atp/dose/data``). For planning studies, not for
clinical dose calculation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.special import ndtr

from atp.cases.case import CaseError, PatientCase
from atp.cases.grid import Grid
from atp.dose.beams import Beam
from atp.dose.density import DEFAULT_HU_TO_RED, hu_to_red, load_hu_to_red
from atp.dose.geometry import beam_axes, source_position_mm, to_beam_coords
from atp.dose.grid import make_dose_grid, mask_on_grid, to_ct_grid
from atp.dose.influence import DoseEngine, DoseInfluence
from atp.dose.kernel import (
    DEFAULT_PDD,
    PencilBeamSettings,
    bixel_integral,
    commission_depth_dose,
    file_digest,
    load_pdd,
)

MAX_RAY_SAMPLES_PER_CHUNK = 2_000_000


@dataclass
class _Prepared:
    """Per-case data shared by every beam."""

    source: str
    ct: Grid
    grid: Grid
    red: np.ndarray  # relative electron density on the CT grid, 0 outside the body
    voxel_index: np.ndarray  # int64 rows -> flat dose-grid index
    points_mm: np.ndarray  # (n_rows, 3) world positions of the rows
    target_points_mm: np.ndarray | None
    body_corners_mm: np.ndarray  # (8, 3) corners of the body's bounding box
    ray_step_mm: float
    lateral_step_mm: float


@dataclass
class _BeamletMap:
    iu: np.ndarray  # int32 beamlet indices along u (centre (iu + 0.5) * bixel)
    iv: np.ndarray

    @property
    def size(self) -> int:
        return int(self.iu.size)


class PencilBeamEngine(DoseEngine):
    """Pencil-beam 6 MV dose engine (see the module docstring and `atp.dose.kernel`).

    Parameters
    ----------
    settings : PencilBeamSettings, optional
        Engine settings; ``None`` uses the defaults.
    **overrides
        Settings fields to replace, e.g. ``bixel_mm=2.5``.
    """

    name = "pencil_beam_6mv"
    version = "1"

    def __init__(self, settings: PencilBeamSettings | None = None, **overrides):
        settings = settings or PencilBeamSettings()
        self.settings = replace(settings, **overrides) if overrides else settings
        self.pdd_table = load_pdd(self.settings.pdd_path)
        self.hu_to_red_table = load_hu_to_red(self.settings.hu_to_red_path)
        self.depth_dose = commission_depth_dose(self.settings, self.pdd_table)

    def cache_token(self) -> dict:
        """Everything about the engine that changes its matrices (for cache keys).

        Returns
        -------
        dict
            ``name``, ``version``, the settings and digests of the PDD and HU-to-RED tables.
        """
        return {"name": self.name, "version": self.version, "settings": self.settings.to_dict(),
                "pdd": file_digest(self.settings.pdd_path or DEFAULT_PDD),
                "hu_to_red": file_digest(self.settings.hu_to_red_path or DEFAULT_HU_TO_RED)}

    # ------------------------------------------------------------------ public API
    def influence(self, case: PatientCase, beams: Sequence[Beam], *,
                  mask: np.ndarray | None = None,
                  target_mask: np.ndarray | None = None) -> DoseInfluence:
        """The influence matrix (CSC, float32, int32 indices) of ``beams`` on ``case``.

        Parameters
        ----------
        case : PatientCase
            The case (CT, body and targets).
        beams : sequence of Beam
            The beams, in order.
        mask : np.ndarray, optional
            Rows: boolean mask on the CT grid, (z, y, x); default the body.
        target_mask : np.ndarray, optional
            Boolean mask on the CT grid that sets the beamlets; default the case's targets.

        Returns
        -------
        DoseInfluence
            The matrix (Gy per MU-equivalent beamlet weight) and its maps.
        """
        prep = self._prepare(case, beams, mask, target_mask)
        maps = [self._beamlet_map(prep, b, i) for i, b in enumerate(beams)]
        n_rows = prep.voxel_index.size
        data, indices, indptr = [], [], [np.zeros(1, dtype=np.int64)]
        nnz = 0
        for i, beam in enumerate(beams):
            block = self._beam_block(prep, beam, i, maps[i])
            data.append(block.data)
            indices.append(block.indices.astype(np.int32, copy=False))
            indptr.append(block.indptr[1:].astype(np.int64) + nnz)
            nnz += block.nnz
            del block
        idx_dtype = np.int32 if nnz < np.iinfo(np.int32).max else np.int64
        ind = np.concatenate(indices).astype(idx_dtype, copy=False)
        del indices
        matrix = sp.csc_matrix((np.concatenate(data), ind,
                                np.concatenate(indptr).astype(idx_dtype)),
                               shape=(n_rows, sum(m.size for m in maps)), copy=False)
        b = self.settings.bixel_mm
        return DoseInfluence(
            matrix=matrix, voxel_index=prep.voxel_index, grid=prep.grid,
            beamlet_beam=np.concatenate([np.full(m.size, i, dtype=np.int32)
                                         for i, m in enumerate(maps)]),
            beamlet_uv_mm=np.concatenate([np.stack([(m.iu + 0.5) * b, (m.iv + 0.5) * b], axis=1)
                                          for m in maps]).astype(np.float32),
            beams=tuple(beams), bixel_mm=b, engine=self.cache_token(), case_id=case.patient_id)

    def forward(self, case: PatientCase, beams: Sequence[Beam], weights: np.ndarray, *,
                mask: np.ndarray | None = None,
                target_mask: np.ndarray | None = None) -> np.ndarray:
        """Dose (Gy, float32) on the CT grid, one beam at a time (never the whole matrix).

        Parameters
        ----------
        case : PatientCase
            The case (CT, body and targets).
        beams : sequence of Beam
            The beams, in order.
        weights : np.ndarray
            Beamlet weights (MU-equivalent), one per beamlet of the influence matrix.
        mask : np.ndarray, optional
            Rows: boolean mask on the CT grid, (z, y, x); default the body.
        target_mask : np.ndarray, optional
            Boolean mask on the CT grid that sets the beamlets; default the case's targets.

        Returns
        -------
        np.ndarray
            Dose (Gy, float32) on the CT grid, (z, y, x).
        """
        prep = self._prepare(case, beams, mask, target_mask)
        maps = [self._beamlet_map(prep, b, i) for i, b in enumerate(beams)]
        n_total = sum(m.size for m in maps)
        w = np.asarray(weights, dtype=np.float32)
        if w.shape != (n_total,) or not np.all(np.isfinite(w)):
            raise ValueError(f"weights: expected {n_total} finite values, got shape {w.shape}")
        rows = np.zeros(prep.voxel_index.size, dtype=np.float64)
        start = 0
        for i, beam in enumerate(beams):
            block = self._beam_block(prep, beam, i, maps[i])
            rows += block @ w[start:start + maps[i].size]
            start += maps[i].size
        dose = np.zeros(prep.grid.size, dtype=np.float32)
        dose[prep.voxel_index] = rows.astype(np.float32)
        return to_ct_grid(dose.reshape(prep.grid.shape), prep.grid, case)

    def radiological_depth_mm(self, case: PatientCase, beam: Beam, points_mm: np.ndarray
                              ) -> np.ndarray:
        """Water-equivalent depth (mm, float32) along the rays from the source of ``beam``
        to world points ``points_mm`` (n, 3) (z, y, x), as the engine computes it.

        Parameters
        ----------
        case : PatientCase
            The case (CT and body).
        beam : Beam
            The beam whose source the rays start from.
        points_mm : np.ndarray
            World points (n, 3), (z, y, x) mm.

        Returns
        -------
        np.ndarray
            Radiological depth (mm water-equivalent, float32), (n,).
        """
        pts = np.atleast_2d(np.asarray(points_mm, dtype=np.float64))
        t, u, v = self._coords(beam, pts)
        band = (float(u.min()) - 1, float(u.max()) + 1, float(v.min()) - 1, float(v.max()) + 1)
        probe = replace(beam, aperture_mm=band)
        prep = self._prepare(case, [probe], None, None)
        return self._radiological_depth(prep, beam, t, u, v, band)

    # ------------------------------------------------------------------ preparation
    def _prepare(self, case: PatientCase, beams: Sequence[Beam], mask, target_mask) -> _Prepared:
        src = f"patient {case.patient_id}"
        ct_hu = case.ct_hu
        if not isinstance(ct_hu, np.ndarray) or ct_hu.ndim != 3 or min(ct_hu.shape) < 1:
            raise CaseError(src, "ct_hu", "expected a non-empty 3D array")
        if not np.all(np.isfinite(ct_hu)):
            raise CaseError(src, "ct_hu", "contains NaN or infinite values")
        spacing = np.asarray(case.spacing_mm, dtype=np.float64)
        if spacing.shape != (3,) or not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
            raise CaseError(src, "spacing_mm",
                            f"every spacing must be > 0 mm, got {case.spacing_mm}")
        origin = np.asarray(case.origin_mm, dtype=np.float64)
        if origin.shape != (3,) or not np.all(np.isfinite(origin)):
            raise CaseError(src, "origin_mm", f"expected 3 finite numbers, got {case.origin_mm}")
        if len(beams) == 0:
            raise ValueError("beams: no beam given")
        ct = case.grid
        lo, hi = ct.box_mm()
        for i, beam in enumerate(beams):
            if not isinstance(beam, Beam):
                raise ValueError(f"beams[{i}]: expected a Beam, got {type(beam).__name__}")
            iso = np.asarray(beam.isocenter_mm)
            if np.any(iso < lo) or np.any(iso > hi):
                raise ValueError(f"beams[{i}].isocenter_mm {beam.isocenter_mm} (z, y, x) lies "
                                 f"outside the CT ({tuple(lo)} to {tuple(hi)} mm)")
        body = case.body_mask
        if not body.any():
            raise CaseError(src, "body", "the body (external) mask is empty")
        rows_mask = body if mask is None else np.asarray(mask)
        if rows_mask.shape != ct.shape or rows_mask.dtype != np.bool_:
            raise ValueError(f"mask: expected a boolean array of shape {ct.shape}")
        target_points = None
        if any(b.aperture_mm is None for b in beams):
            tmask = case.target_union() if target_mask is None else np.asarray(target_mask)
            if tmask.shape != ct.shape:
                raise ValueError(f"target_mask: expected shape {ct.shape}, got {tmask.shape}")
            tidx = np.argwhere(tmask)
            if tidx.size == 0:
                raise CaseError(src, "targets", "empty target: no target voxel to aim the "
                                f"beams at (targets: {case.targets})")
            target_points = ct.world_mm(tidx)
        grid = make_dose_grid(case, self.settings.dose_grid_spacing_mm)
        grid_mask = mask_on_grid(rows_mask, case, grid)
        voxel_index = np.flatnonzero(grid_mask)
        if voxel_index.size == 0:
            raise ValueError("mask: no dose-grid voxel inside the mask")
        red = hu_to_red(ct_hu, table=self.hu_to_red_table)
        red[~body] = 0.0
        bidx = np.argwhere(body)
        b_lo, b_hi = bidx.min(axis=0) - 1, bidx.max(axis=0) + 1
        corners = ct.world_mm([[z, y, x] for z in (b_lo[0], b_hi[0]) for y in (b_lo[1], b_hi[1])
                               for x in (b_lo[2], b_hi[2])])
        step = self.settings.ray_step_mm or 0.5 * float(spacing.min())
        return _Prepared(src, ct, grid, red, voxel_index, grid.points_mm(voxel_index),
                         target_points, corners, float(step),
                         float(min(spacing.min(), self.settings.bixel_mm / 2)))

    def _beamlet_map(self, prep: _Prepared, beam: Beam, i: int) -> _BeamletMap:
        b = self.settings.bixel_mm
        if beam.aperture_mm is not None:
            u0, u1, v0, v1 = beam.aperture_mm
            ius = np.arange(math.ceil(u0 / b - 0.5 - 1e-9), math.floor(u1 / b - 0.5 + 1e-9) + 1)
            ivs = np.arange(math.ceil(v0 / b - 0.5 - 1e-9), math.floor(v1 / b - 0.5 + 1e-9) + 1)
            iu, iv = np.meshgrid(ius, ivs, indexing="ij")
            iu, iv = iu.ravel(), iv.ravel()
        else:
            _, u, v = self._coords(beam, prep.target_points_mm)
            m = self.settings.target_margin_mm
            k = math.ceil(m / b) + 1
            base_u, base_v = np.floor(u / b).astype(np.int64), np.floor(v / b).astype(np.int64)
            ou, ov = int(base_u.min()) - k, int(base_v.min()) - k
            grid = np.zeros((int(base_u.max()) - ou + k + 1, int(base_v.max()) - ov + k + 1), bool)
            for du in range(-k, k + 1):
                cu = base_u + du  # beamlet interval [cu b, (cu + 1) b] within m of u?
                ok_u = (cu * b <= u + m) & ((cu + 1) * b >= u - m)
                for dv in range(-k, k + 1):
                    cv = base_v + dv
                    ok = ok_u & (cv * b <= v + m) & ((cv + 1) * b >= v - m)
                    grid[cu[ok] - ou, cv[ok] - ov] = True
            grid = ndimage.binary_fill_holes(grid)
            iu, iv = np.nonzero(grid)
            iu, iv = iu + ou, iv + ov
        if iu.size == 0:
            raise ValueError(f"beams[{i}] (gantry {beam.gantry_deg:g} deg): no beamlet in the "
                             f"aperture {beam.aperture_mm}")
        return _BeamletMap(iu.astype(np.int32), iv.astype(np.int32))

    @staticmethod
    def _coords(beam: Beam, points_mm: np.ndarray):
        return to_beam_coords(points_mm, gantry_deg=beam.gantry_deg, couch_deg=beam.couch_deg,
                              isocenter_mm=beam.isocenter_mm, sad_mm=beam.sad_mm)

    # ------------------------------------------------------------------ radiological depth
    def _radiological_depth(self, prep: _Prepared, beam: Beam, t, u, v, band) -> np.ndarray:
        """Water-equivalent depth (mm, float32) of the points (t, u, v) of one beam."""
        sad = beam.sad_mm
        s_dir, u_dir, v_dir = beam_axes(beam.gantry_deg, beam.couch_deg)
        source = source_position_mm(beam.gantry_deg, beam.couch_deg, beam.isocenter_mm, sad)
        da, dt = prep.lateral_step_mm, prep.ray_step_mm
        a0, b0 = band[0], band[2]
        n_a = int(math.ceil((band[1] - band[0]) / da)) + 1
        n_b = int(math.ceil((band[3] - band[2]) / da)) + 1
        tc, _, _ = self._coords(beam, prep.body_corners_mm)
        t0 = max(float(tc.min()) - dt, 1.0)
        n_t = max(int(math.ceil((float(t.max()) + dt - t0) / dt)) + 1, 2)
        cum = np.empty((n_a, n_b, n_t), dtype=np.float32)
        b_ax = b0 + da * np.arange(n_b)
        t_ax = t0 + dt * np.arange(n_t)
        origin = np.asarray(prep.ct.origin_mm)
        spacing = np.asarray(prep.ct.spacing_mm)
        chunk = max(1, MAX_RAY_SAMPLES_PER_CHUNK // (n_b * n_t))
        for s0 in range(0, n_a, chunk):
            a_ax = a0 + da * np.arange(s0, min(n_a, s0 + chunk))
            # ray direction per (a, b), unnormalised: P = S + t * dir
            dirs = (-s_dir[None, None, :] + (a_ax[:, None, None] / sad) * u_dir
                    + (b_ax[None, :, None] / sad) * v_dir)
            coords = ((source[:, None, None, None] + dirs.transpose(2, 0, 1)[..., None]
                       * t_ax[None, None, None, :] - origin[:, None, None, None])
                      / spacing[:, None, None, None])
            rho = ndimage.map_coordinates(prep.red, coords.reshape(3, -1), order=1,
                                          mode="grid-constant", cval=0.0, prefilter=False)
            rho = rho.reshape(a_ax.size, n_b, n_t)
            stretch = np.sqrt(1.0 + (a_ax[:, None] ** 2 + b_ax[None, :] ** 2) / sad**2)
            c = cum[s0:s0 + a_ax.size]
            c[..., 0] = 0.0
            np.cumsum(0.5 * (rho[..., 1:] + rho[..., :-1]), axis=-1, out=c[..., 1:])
            c *= (dt * stretch).astype(np.float32)[..., None]
        pts = np.stack([(u - a0) / da, (v - b0) / da, (t - t0) / dt])
        return ndimage.map_coordinates(cum, pts, order=1, mode="nearest", prefilter=False)

    # ------------------------------------------------------------------ one beam
    def _beam_block(self, prep: _Prepared, beam: Beam, i: int, bmap: _BeamletMap
                    ) -> sp.csc_matrix:
        st = self.settings
        b, c = st.bixel_mm, st.lateral_cutoff_mm
        t_all, u_all, v_all = self._coords(beam, prep.points_mm)
        band = ((bmap.iu.min()) * b - c, (bmap.iu.max() + 1) * b + c,
                (bmap.iv.min()) * b - c, (bmap.iv.max() + 1) * b + c)
        sel = np.flatnonzero((u_all >= band[0]) & (u_all <= band[1]) & (v_all >= band[2])
                             & (v_all <= band[3]) & (t_all > 0))
        where = f"beams[{i}] (gantry {beam.gantry_deg:g} deg, couch {beam.couch_deg:g} deg)"
        if sel.size == 0:
            raise ValueError(f"{where}: the beam misses the body: no voxel of the dose mask "
                             "lies in its field")
        t, u, v = t_all[sel], u_all[sel], v_all[sel]
        depth = self._radiological_depth(prep, beam, t, u, v, band)
        in_field = ((u >= bmap.iu.min() * b) & (u <= (bmap.iu.max() + 1) * b)
                    & (v >= bmap.iv.min() * b) & (v <= (bmap.iv.max() + 1) * b))
        if not np.any(depth[in_field] > 0):
            raise ValueError(f"{where}: the beam misses the body: its field holds no body voxel")
        t, u, v = (x.astype(np.float32) for x in (t, u, v))
        scale = np.float32(beam.sad_mm) / t
        amp = self.depth_dose(depth) * scale * scale
        sp_, ss_, ws = st.kernel_widths(depth)
        sp_, ss_ = sp_ * scale, ss_ * scale
        h = np.float32(b / 2)
        peak = (1 - ws) * (2 * ndtr(h / sp_) - 1) ** 2 + ws * (2 * ndtr(h / ss_) - 1) ** 2
        thr = np.float32(st.kernel_threshold) * peak
        k = int(math.floor(c / b + 0.5))
        offs = np.arange(-k, k + 1, dtype=np.int32)
        iu0 = np.floor(u / np.float32(b)).astype(np.int32)
        iv0 = np.floor(v / np.float32(b)).astype(np.int32)
        du = u[None, :] - (iu0[None, :] + offs[:, None] + np.float32(0.5)) * np.float32(b)
        dv = v[None, :] - (iv0[None, :] + offs[:, None] + np.float32(0.5)) * np.float32(b)
        pu_p, pu_s = bixel_integral(du, h, sp_[None]), bixel_integral(du, h, ss_[None])
        pv_p, pv_s = bixel_integral(dv, h, sp_[None]), bixel_integral(dv, h, ss_[None])
        # beamlet lookup table with a padding that every offset stays inside
        pad = 2 * k + 4
        lu0, lv0 = int(bmap.iu.min()) - pad, int(bmap.iv.min()) - pad
        table = -np.ones((int(bmap.iu.max()) - lu0 + pad + 1, int(bmap.iv.max()) - lv0 + pad + 1),
                         dtype=np.int32)
        table[bmap.iu - lu0, bmap.iv - lv0] = np.arange(bmap.size, dtype=np.int32)
        iu_t = np.clip(iu0 - lu0 - k, 0, table.shape[0] - 1 - 2 * k)
        iv_t = np.clip(iv0 - lv0 - k, 0, table.shape[1] - 1 - 2 * k)
        cut2 = np.float32(c * c)
        rows_l, cols_l, vals_l = [], [], []
        for a in range(offs.size):
            cols = table[(iu_t + a)[None, :], iv_t[None, :] + np.arange(offs.size)[:, None]]
            ok = (cols >= 0) & (du[a][None, :] ** 2 + dv ** 2 <= cut2)
            kb, r = np.nonzero(ok)
            if r.size == 0:
                continue
            w_r = ws[r]
            val = amp[r] * ((1 - w_r) * pu_p[a, r] * pv_p[kb, r] + w_r * pu_s[a, r] * pv_s[kb, r])
            keep = val >= thr[r] * amp[r]
            rows_l.append(sel[r[keep]].astype(np.int32))
            cols_l.append(cols[kb[keep], r[keep]])
            vals_l.append(val[keep].astype(np.float32))
        n_rows = prep.voxel_index.size
        if not rows_l:
            return sp.csc_matrix((n_rows, bmap.size), dtype=np.float32)
        coo = sp.coo_matrix((np.concatenate(vals_l), (np.concatenate(rows_l),
                                                      np.concatenate(cols_l))),
                            shape=(n_rows, bmap.size))
        return coo.tocsc()
