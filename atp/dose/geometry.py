"""Beam geometry: IEC 61217 gantry/couch angles in the DICOM patient coordinate system.

Conventions
-----------
World coordinates are DICOM patient coordinates in mm, stored like every array in
``atp`` in (z, y, x) order: x to the patient's LEFT, y POSTERIOR, z SUPERIOR. The patient
is assumed head-first supine (HFS), so the IEC 61217 fixed system (X to the right of an
observer facing the gantry, Y towards the gantry, Z up) maps to the patient as
``x = X, y = -Z, z = Y``.

* Gantry angle ``g`` (degrees, IEC 61217): the source rotates in the X-Z plane,
  ``source = iso + SAD (sin g, 0, cos g)`` in IEC (X, Y, Z). Gantry 0 puts the source
  ANTERIOR of the patient (world y = -SAD from the isocentre), gantry 90 at the patient's
  LEFT (world +x), gantry 180 posterior, gantry 270 at the patient's right.
* Couch (patient support) angle ``c``: rotation of the couch about the vertical IEC Z axis
  through the isocentre, positive counter-clockwise seen from above (IEC 61217). In
  patient coordinates the beam is therefore rotated by ``-c`` about the vertical axis:
  gantry 90 with couch 90 irradiates the patient from the feet (source inferior).
* Beam's-eye view (BEV) axes at collimator 0: ``u`` is the IEC beam-limiting-device X
  axis (the leaf travel direction; patient left at gantry 0), ``v`` the IEC Y axis
  (towards the gantry; patient superior at couch 0). Lateral positions of a point are
  projected through the source onto the isocentre plane (divergent geometry), so a
  beamlet of ``5 mm x 5 mm`` is 5 mm wide at the isocentre at every depth.
* ``t`` is the distance from the source along the central axis (``t = SAD`` at the
  isocentre plane); the inverse-square factor of a point is ``(SAD / t)^2``.
"""

from __future__ import annotations

import math

import numpy as np


def _iec_to_world_zyx(v_xyz: np.ndarray) -> np.ndarray:
    """IEC fixed (X, Y, Z) vector -> world (z, y, x) vector for a head-first-supine patient."""
    x, y, z = (float(c) for c in v_xyz)
    return np.array([y, -z, x], dtype=np.float64)


def beam_axes(gantry_deg: float, couch_deg: float = 0.0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors (world (z, y, x)) of a beam: ``(s, u, v)``.

    ``s`` points from the isocentre to the source, ``u`` and ``v`` are the BEV axes.

    Parameters
    ----------
    gantry_deg : float
        Gantry angle (degrees, IEC 61217).
    couch_deg : float
        Couch angle (degrees, IEC 61217); default 0.

    Returns
    -------
    tuple of 3 np.ndarray
        ``(s, u, v)``, each a float64 unit vector (3,) in world (z, y, x).
    """
    g = math.radians(float(gantry_deg))
    c = math.radians(float(couch_deg))
    s = np.array([math.sin(g), 0.0, math.cos(g)])
    u = np.array([math.cos(g), 0.0, -math.sin(g)])
    v = np.array([0.0, 1.0, 0.0])
    # couch rotation by +c (counter-clockwise from above) = beam rotation by -c in the patient
    rot = np.array([[math.cos(c), math.sin(c), 0.0],
                    [-math.sin(c), math.cos(c), 0.0],
                    [0.0, 0.0, 1.0]])
    return tuple(_iec_to_world_zyx(rot @ a) for a in (s, u, v))  # type: ignore[return-value]


def source_position_mm(gantry_deg: float, couch_deg: float, isocenter_mm,
                       sad_mm: float) -> np.ndarray:
    """World (z, y, x) position of the source in mm.

    Parameters
    ----------
    gantry_deg : float
        Gantry angle (degrees, IEC 61217).
    couch_deg : float
        Couch angle (degrees, IEC 61217).
    isocenter_mm : sequence of 3 floats
        World (z, y, x) isocentre (mm).
    sad_mm : float
        Source-axis distance (mm).

    Returns
    -------
    np.ndarray
        Source position, float64 (3,), world (z, y, x) mm.
    """
    s, _, _ = beam_axes(gantry_deg, couch_deg)
    return np.asarray(isocenter_mm, dtype=np.float64) + float(sad_mm) * s


def to_beam_coords(points_mm: np.ndarray, *, gantry_deg: float, couch_deg: float,
                   isocenter_mm, sad_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World points (n, 3) in (z, y, x) mm -> ``(t_mm, u_mm, v_mm)`` float64.

    ``t`` is the distance from the source along the central axis, ``u``/``v`` the lateral
    position projected through the source onto the isocentre plane.

    Parameters
    ----------
    points_mm : np.ndarray
        World points (n, 3), (z, y, x) mm.
    gantry_deg : float
        Gantry angle (degrees, IEC 61217).
    couch_deg : float
        Couch angle (degrees, IEC 61217).
    isocenter_mm : sequence of 3 floats
        World (z, y, x) isocentre (mm).
    sad_mm : float
        Source-axis distance (mm).

    Returns
    -------
    tuple of 3 np.ndarray
        ``(t_mm, u_mm, v_mm)``, each float64 (n,): distance from the source along the
        central axis and BEV position at the isocentre plane (mm).
    """
    s, u, v = beam_axes(gantry_deg, couch_deg)
    r = np.asarray(points_mm, dtype=np.float64) - np.asarray(isocenter_mm, dtype=np.float64)
    t = float(sad_mm) - r @ s
    scale = float(sad_mm) / np.maximum(t, 1e-6)
    return t, (r @ u) * scale, (r @ v) * scale

