"""Small synthetic cases and a toy parallel-beam influence matrix for planning tests.

The toy matrix is a real (if crude) photon model: four opposed parallel beams along the
y and x axes, one beamlet per voxel column, exponential attenuation with depth in the body
(mu = 0.005/mm) and a Gaussian lateral spread of one voxel. It is fast and linear, which
is all the optimizer tests need; the physics is tested with the pencil-beam engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from atp.cases import PatientCase, Prescription, Roi


def disc(shape, center_yx, radius):
    zz, yy, xx = np.indices(shape)
    return (yy - center_yx[0]) ** 2 + (xx - center_yx[1]) ** 2 <= radius ** 2


def toy_case(*, n=30, nz=4, spacing_mm=3.0) -> PatientCase:
    shape = (nz, n, n)
    c = n // 2
    body = disc(shape, (c, c), n // 2 - 1)
    ptv = disc(shape, (c, c - 2), 4)
    organ = disc(shape, (c - 1, c + 6), 3) & ~ptv  # lateral organ next to the target
    cord = disc(shape, (c + 10, c + 8), 1.5)  # posterior serial organ, off the beam axes
    return PatientCase(
        patient_id="toy", ct_hu=np.where(body, 0.0, -1000.0).astype(np.float32),
        spacing_mm=(spacing_mm,) * 3,
        rois={"body": Roi(body, "external"), "ptv_6000": Roi(ptv, "target"),
              "parotid_l": Roi(organ, "organ"), "spinal_cord": Roi(cord, "organ")},
        prescriptions=(Prescription("ptv_6000", 60.0, 30),), site="npc")


@dataclass
class ToyGrid:
    shape: tuple


@dataclass
class ToyInfluence:
    """Duck-types the parts of `atp.dose.DoseInfluence` the planner uses."""

    matrix: sp.csr_matrix
    voxel_index: np.ndarray
    grid: ToyGrid
    beamlet_beam: np.ndarray
    beamlet_uv_mm: np.ndarray
    bixel_mm: float


def toy_influence(case: PatientCase, *, mu_per_mm=0.005, sigma_vox=1.0) -> ToyInfluence:
    nz, ny, nx = case.shape
    sp_mm = case.spacing_mm[1]
    body = case.body_mask
    vi = np.flatnonzero(body.ravel())
    z, y, x = np.unravel_index(vi, case.shape)
    cols, vals, rows, beam_of, uv = [], [], [], [], []
    lat = np.arange(-3, 4)
    kern = np.exp(-0.5 * (lat / sigma_vox) ** 2)
    kern /= kern.sum()
    b = 0
    for beam, (axis, flip) in enumerate([("y", False), ("x", False), ("y", True), ("x", True)]):
        depth_idx = y if axis == "y" else x
        lateral = x if axis == "y" else y
        n_lat = nx if axis == "y" else ny
        # depth from the body surface along the beam
        if axis == "y":
            first = np.argmax(body, axis=1) if not flip else ny - 1 - np.argmax(body[:, ::-1], 1)
            surf = first[z, x]
        else:
            first = np.argmax(body, axis=2) if not flip else nx - 1 - np.argmax(body[:, :, ::-1], 2)
            surf = first[z, y]
        depth_mm = np.abs(depth_idx - surf) * sp_mm
        att = np.exp(-mu_per_mm * depth_mm)
        for zi in range(nz):
            for li in range(n_lat):
                near = (z == zi) & (np.abs(lateral - li) <= 3)
                r = np.flatnonzero(near)
                if r.size == 0:
                    continue
                w = kern[(lateral[r] - li) + 3] * att[r]
                rows.append(r)
                vals.append(w)
                cols.append(np.full(r.size, b))
                beam_of.append(beam)
                uv.append((zi * sp_mm, li * sp_mm))
                b += 1
    m = sp.csr_matrix((np.concatenate(vals).astype(np.float32),
                       (np.concatenate(rows), np.concatenate(cols))), shape=(vi.size, b))
    return ToyInfluence(m, vi, ToyGrid(case.shape), np.asarray(beam_of),
                        np.asarray(uv, dtype=float), sp_mm)
