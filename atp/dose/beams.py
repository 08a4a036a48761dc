"""Treatment beams: static IMRT fields and VMAT arcs sampled into static directions.

A `Beam` is one static beam direction (an IMRT field or one VMAT control-point
direction): gantry and couch angles (IEC 61217, see `atp.dose.geometry`), isocentre in
world (z, y, x) mm and source-axis distance. The beamlet (bixel) size and the margin
around the targets' beam's-eye view belong to the dose engine's settings, because they
define the beamlet basis the engine is commissioned for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from atp.cases.case import CaseError, PatientCase

DEFAULT_SAD_MM = 1000.0
DEFAULT_ARC_SPACING_DEG = 4.0


@dataclass(frozen=True)
class Beam:
    """One static beam direction.

    Parameters
    ----------
    gantry_deg, couch_deg : float
        IEC 61217 angles in degrees.
    isocenter_mm : tuple of 3 floats
        World (z, y, x) position of the isocentre.
    sad_mm : float
        Source-axis distance.
    aperture_mm : tuple (u_min, u_max, v_min, v_max), optional
        A fixed rectangular field at the isocentre plane (BEV axes, mm). ``None`` (the
        default) fills the beam's-eye view of the targets plus the engine's margin.
    label : str
        Free text: the field name or the arc a VMAT direction belongs to.
    """

    gantry_deg: float
    couch_deg: float = 0.0
    isocenter_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sad_mm: float = DEFAULT_SAD_MM
    aperture_mm: tuple[float, float, float, float] | None = None
    label: str = ""

    def __post_init__(self) -> None:
        for name in ("gantry_deg", "couch_deg", "sad_mm"):
            val = getattr(self, name)
            if not isinstance(val, int | float) or not math.isfinite(val):
                raise ValueError(f"Beam.{name} must be a finite number, got {val!r}")
        if self.sad_mm <= 0:
            raise ValueError(f"Beam.sad_mm must be > 0, got {self.sad_mm}")
        iso = tuple(float(c) for c in self.isocenter_mm)
        if len(iso) != 3 or not all(math.isfinite(c) for c in iso):
            raise ValueError(f"Beam.isocenter_mm must be 3 finite numbers (z, y, x), "
                             f"got {self.isocenter_mm!r}")
        object.__setattr__(self, "isocenter_mm", iso)
        object.__setattr__(self, "gantry_deg", float(self.gantry_deg) % 360.0)
        object.__setattr__(self, "couch_deg", float(self.couch_deg))
        if self.aperture_mm is not None:
            ap = tuple(float(c) for c in self.aperture_mm)
            if len(ap) != 4 or not (ap[0] < ap[1] and ap[2] < ap[3]):
                raise ValueError("Beam.aperture_mm must be (u_min, u_max, v_min, v_max) with "
                                 f"min < max, got {self.aperture_mm!r}")
            object.__setattr__(self, "aperture_mm", ap)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (used by the influence cache).

        Returns
        -------
        dict
            The beam's fields by name.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Beam:
        """Rebuild a beam from :meth:`to_dict` output.

        Parameters
        ----------
        d : Mapping
            Beam fields by name (lists are accepted for ``isocenter_mm``, ``aperture_mm``).

        Returns
        -------
        Beam
            The rebuilt beam.
        """
        d = dict(d)
        if d.get("aperture_mm") is not None:
            d["aperture_mm"] = tuple(d["aperture_mm"])
        d["isocenter_mm"] = tuple(d["isocenter_mm"])
        return cls(**d)


def default_isocenter_mm(case: PatientCase, *, target_mask: np.ndarray | None = None
                         ) -> tuple[float, float, float]:
    """Centroid (world (z, y, x) mm) of the union of the case's targets (or ``target_mask``).

    Raises `CaseError` when the case has no target voxels.

    Parameters
    ----------
    case : PatientCase
        The case; its grid maps voxel indices to world mm.
    target_mask : np.ndarray, optional
        Boolean mask on the CT grid, (z, y, x); default the union of the case's targets.

    Returns
    -------
    tuple of 3 floats
        Centroid of the mask's voxel centres, world (z, y, x) mm.
    """
    mask = case.target_union() if target_mask is None else np.asarray(target_mask, dtype=bool)
    if mask.shape != case.shape:
        raise CaseError(f"patient {case.patient_id}", "target_mask",
                        f"shape {mask.shape} does not match the CT grid {case.shape}")
    idx = np.argwhere(mask)
    if idx.size == 0:
        raise CaseError(f"patient {case.patient_id}", "targets",
                        f"empty target: no voxel in the target union (targets: {case.targets})")
    centroid = idx.mean(axis=0, dtype=np.float64)
    world = case.grid.world_mm(centroid)
    return tuple(float(c) for c in world)  # type: ignore[return-value]


def arc_gantry_angles_deg(start_deg: float, stop_deg: float, *, direction: str = "cw",
                          spacing_deg: float = DEFAULT_ARC_SPACING_DEG) -> list[float]:
    """Dose-calculation directions of one arc.

    The arc (``cw``: gantry angle increasing, ``ccw``: decreasing; ``start == stop`` is a
    full 360-degree arc) is cut into ``n = ceil(length / spacing_deg)`` equal segments and
    each segment is represented by the static direction at its centre, so a full arc at
    5 degrees gives 72 directions.

    Parameters
    ----------
    start_deg : float
        Gantry angle where the arc starts (degrees, IEC 61217).
    stop_deg : float
        Gantry angle where the arc stops (degrees); equal to ``start_deg`` for a full arc.
    direction : {"cw", "ccw"}
        ``cw``: gantry angle increasing; ``ccw``: decreasing.
    spacing_deg : float
        Largest segment per direction (degrees), > 0.

    Returns
    -------
    list of float
        Gantry angles (degrees, in [0, 360)) of the segment centres, in arc order.
    """
    if direction not in ("cw", "ccw"):
        raise ValueError(f"arc direction must be 'cw' or 'ccw', got {direction!r}")
    if not (math.isfinite(spacing_deg) and spacing_deg > 0):
        raise ValueError(f"spacing_deg must be > 0, got {spacing_deg!r}")
    sign = 1.0 if direction == "cw" else -1.0
    length = (sign * (float(stop_deg) - float(start_deg))) % 360.0
    if length == 0.0:
        length = 360.0
    n = max(1, math.ceil(length / spacing_deg - 1e-9))
    step = length / n
    return [(float(start_deg) + sign * (k + 0.5) * step) % 360.0 for k in range(n)]


def beams_from_config(technique_cfg: Mapping[str, Any], *, isocenter_mm: Sequence[float],
                      sad_mm: float = DEFAULT_SAD_MM,
                      laterality: str | None = None) -> list[Beam]:
    """Beams from a technique configuration.

    A configuration may say for which treated ``side`` ("left"/"right") its angles are
    written; a case of the other ``laterality`` gets them mirrored across the sagittal
    plane (gantry g -> 360 - g, arcs reversed), as a planner would set them up.

    ``{"technique": "imrt", "gantry_deg": [0, 40, ...], "couch_deg": 0}`` gives one beam
    per gantry angle (``couch_deg`` a number or a list of the same length);
    ``{"technique": "vmat", "arcs": [{"start_deg": 181, "stop_deg": 179,
    "direction": "cw", "couch_deg": 0}], "spacing_deg": 4}`` gives the directions of
    `arc_gantry_angles_deg` for every arc.

    Parameters
    ----------
    technique_cfg : Mapping
        The technique: ``technique``, ``gantry_deg``/``couch_deg`` or ``arcs``, optional
        ``spacing_deg`` (degrees) and ``side`` (see above).
    isocenter_mm : sequence of 3 floats
        World (z, y, x) isocentre (mm) of every beam.
    sad_mm : float
        Source-axis distance (mm).
    laterality : str, optional
        Treated side of the case, "left" or "right"; ``None`` never mirrors.

    Returns
    -------
    list of Beam
        One per IMRT field (label ``field<i>``) or VMAT direction (label ``arc<i>``).
    """
    cfg = dict(technique_cfg)
    side = cfg.pop("side", None)
    if side not in (None, "left", "right"):
        raise ValueError(f"technique 'side' must be left or right, got {side!r}")
    if side and laterality in ("left", "right") and laterality != side:
        cfg = _mirrored(cfg)
    technique = str(cfg.get("technique", "")).lower()
    iso = tuple(float(c) for c in isocenter_mm)
    if technique == "imrt":
        angles = cfg.get("gantry_deg")
        if not isinstance(angles, Sequence) or isinstance(angles, str) or len(angles) == 0:
            raise ValueError("imrt technique: 'gantry_deg' must be a non-empty list of angles, "
                             f"got {angles!r}")
        couch = cfg.get("couch_deg", 0.0)
        couches = list(couch) if isinstance(couch, Sequence) else [couch] * len(angles)
        if len(couches) != len(angles):
            raise ValueError(f"imrt technique: 'couch_deg' has {len(couches)} entries for "
                             f"{len(angles)} gantry angles")
        return [Beam(gantry_deg=float(g), couch_deg=float(c), isocenter_mm=iso, sad_mm=sad_mm,
                     label=f"field{i + 1}")
                for i, (g, c) in enumerate(zip(angles, couches, strict=True))]
    if technique == "vmat":
        arcs = cfg.get("arcs")
        if not isinstance(arcs, Sequence) or len(arcs) == 0:
            raise ValueError(f"vmat technique: 'arcs' must be a non-empty list, got {arcs!r}")
        spacing = float(cfg.get("spacing_deg", DEFAULT_ARC_SPACING_DEG))
        beams: list[Beam] = []
        for i, arc in enumerate(arcs):
            try:
                start, stop = float(arc["start_deg"]), float(arc["stop_deg"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"vmat technique: arcs[{i}] needs numeric 'start_deg' and "
                                 f"'stop_deg', got {arc!r}") from None
            angles = arc_gantry_angles_deg(start, stop, direction=str(arc.get("direction", "cw")),
                                           spacing_deg=float(arc.get("spacing_deg", spacing)))
            beams += [Beam(gantry_deg=g, couch_deg=float(arc.get("couch_deg", 0.0)),
                           isocenter_mm=iso, sad_mm=sad_mm, label=f"arc{i + 1}") for g in angles]
        return beams
    raise ValueError(f"technique must be 'imrt' or 'vmat', got {cfg.get('technique')!r}")


def _mirrored(cfg: dict) -> dict:
    """The technique mirrored across the sagittal plane (gantry g -> 360 - g)."""
    out = dict(cfg)
    if "gantry_deg" in cfg:
        out["gantry_deg"] = [(360.0 - float(g)) % 360.0 for g in cfg["gantry_deg"]]
    if "arcs" in cfg:
        flip = {"cw": "ccw", "ccw": "cw"}
        out["arcs"] = [{**dict(a), "start_deg": (360.0 - float(a["start_deg"])) % 360.0,
                        "stop_deg": (360.0 - float(a["stop_deg"])) % 360.0,
                        "direction": flip.get(str(dict(a).get("direction", "cw")), "ccw")}
                       for a in cfg["arcs"]]
    return out
