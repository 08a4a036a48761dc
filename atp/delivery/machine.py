"""The treatment machine a plan is sequenced for: MLC geometry, speeds, dose rate, limits.

All lengths are at the isocentre plane (mm), in the beam-limiting-device axes of IEC 61217
at collimator 0, which are the engine's beam's-eye-view axes (`atp.dose.geometry`): the
leaves travel along ``u`` (IEC X, DICOM ``MLCX``), leaf pairs are stacked along ``v``
(IEC Y). Leaf pair ``k`` covers ``v`` in ``[leaf_boundaries_mm[k], leaf_boundaries_mm[k+1]]``
(DICOM LeafPositionBoundaries); bank 1 is the ``-u`` side (DICOM leaves 1..N), bank 2 the
``+u`` side (leaves N+1..2N).

Beamlet rows versus leaves
--------------------------
The engine's beamlets are ``bixel_mm`` squares whose edges sit on multiples of
``bixel_mm`` from the central axis (`atp.dose.pencil_beam`). `row_overlap` gives, for every
beamlet row, the share of it under each leaf pair:

* rows that are leaves (5 mm beamlets under the 5 mm central leaves) map one to one;
* rows finer than the leaves (5 mm beamlets under a 10 mm outer leaf) share one leaf
  pair: the pair is sequenced for the mean of its rows (beamlets that exist only) and
  delivers that mean to each of them;
* rows coarser than the leaves (10 mm beamlets of the 6 mm cohort grid) are covered by
  several pairs, each sequenced for the row's fluence; the row receives the overlap-
  weighted mean of its pairs;
* rows whose edges do not fall on leaf boundaries (e.g. 3 mm or 7 mm beamlets) are
  handled by the same overlap weights, at the cost of fidelity (a leaf pair then
  delivers one profile to two different rows). `alignment_note` says which case applies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from atp.sites import CONF_DIR

DEFAULT_MACHINE = "varian_mlc120"


@dataclass(frozen=True)
class Machine:
    """A linac with a single-focused MLC (see the module docstring for axes).

    Parameters
    ----------
    name : str
        Treatment machine name (written to the RTPLAN).
    leaf_widths_mm : sequence of (count, width_mm)
        Leaf pair widths from ``-v`` to ``+v``, centred on the central axis.
    max_leaf_speed_mm_s, max_dose_rate_mu_min, max_gantry_speed_deg_s : float
        Speed limits.
    leaf_transmission, jaw_transmission : float
        Transmitted fraction under a leaf / under a jaw (0..1).
    min_leaf_gap_mm : float
        Smallest distance between opposing leaves (closed pairs sit at this gap).
    min_mu_per_segment : float
        Smallest MU of a step-and-shoot segment (per fraction).
    min_mu_per_control_point : float
        Smallest MU between two control points of a dynamic beam (0: no minimum).
    min_mu_per_deg, max_mu_per_deg : float
        MU per degree limits of an arc.
    leaf_range_mm : (min, max)
        Where a leaf tip may be.
    jaw_x1_mm, jaw_x2_mm, jaw_y1_mm, jaw_y2_mm : (min, max)
        Ranges of the four jaws.
    mu_calibration_cgy_per_mu : float
        Dose at dmax for the reference field (10 x 10 cm, SSD 100 cm) per MU; the engine is
        commissioned to 1 cGy/MU (`atp.dose.mu`), so the beamlet weight unit is 1 MU.
    sad_mm : float
        Source-axis distance (mm).
    energy_mv : float
        Nominal beam energy (MV).
    manufacturer, model : str
        Written to the RTPLAN's equipment attributes.
    """

    name: str = "atp_mlc120"
    leaf_widths_mm: tuple[tuple[int, float], ...] = ((10, 10.0), (40, 5.0), (10, 10.0))
    max_leaf_speed_mm_s: float = 25.0
    max_dose_rate_mu_min: float = 600.0
    max_gantry_speed_deg_s: float = 4.8
    leaf_transmission: float = 0.015
    jaw_transmission: float = 0.005
    min_leaf_gap_mm: float = 0.5
    min_mu_per_segment: float = 1.0
    min_mu_per_control_point: float = 0.0
    min_mu_per_deg: float = 0.1
    max_mu_per_deg: float = 20.0
    leaf_range_mm: tuple[float, float] = (-200.0, 200.0)
    jaw_x1_mm: tuple[float, float] = (-200.0, 20.0)
    jaw_x2_mm: tuple[float, float] = (-20.0, 200.0)
    jaw_y1_mm: tuple[float, float] = (-200.0, 100.0)
    jaw_y2_mm: tuple[float, float] = (-100.0, 200.0)
    mu_calibration_cgy_per_mu: float = 1.0
    sad_mm: float = 1000.0
    energy_mv: float = 6.0
    manufacturer: str = "atp"
    model: str = "generic 120-leaf MLC linac"
    leaf_boundaries_mm: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        groups = tuple((int(c), float(w)) for c, w in (_pair(g) for g in self.leaf_widths_mm))
        object.__setattr__(self, "leaf_widths_mm", groups)
        if not groups or any(c < 1 or not w > 0 for c, w in groups):
            raise ValueError(f"Machine.leaf_widths_mm: expected (count >= 1, width > 0) "
                             f"groups, got {self.leaf_widths_mm!r}")
        widths = np.concatenate([np.full(c, w) for c, w in groups])
        edges = np.concatenate([[0.0], np.cumsum(widths)])
        object.__setattr__(self, "leaf_boundaries_mm", edges - edges[-1] / 2)
        for name in ("max_leaf_speed_mm_s", "max_dose_rate_mu_min", "max_gantry_speed_deg_s",
                     "mu_calibration_cgy_per_mu", "sad_mm", "energy_mv"):
            val = getattr(self, name)
            if not (isinstance(val, int | float) and math.isfinite(val) and val > 0):
                raise ValueError(f"Machine.{name} must be > 0, got {val!r}")
        for name in ("leaf_transmission", "jaw_transmission"):
            val = getattr(self, name)
            if not 0.0 <= val < 1.0:
                raise ValueError(f"Machine.{name} must be in [0, 1), got {val!r}")
        for name in ("min_leaf_gap_mm", "min_mu_per_segment", "min_mu_per_control_point",
                     "min_mu_per_deg"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"Machine.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0 < len(self.name) <= 16:
            raise ValueError(f"Machine.name must have 1 to 16 characters (DICOM "
                             f"TreatmentMachineName), got {self.name!r}")
        if not self.max_mu_per_deg > self.min_mu_per_deg:
            raise ValueError("Machine.max_mu_per_deg must exceed min_mu_per_deg")
        for name in ("leaf_range_mm", "jaw_x1_mm", "jaw_x2_mm", "jaw_y1_mm", "jaw_y2_mm"):
            lo, hi = (float(v) for v in getattr(self, name))
            if not lo < hi:
                raise ValueError(f"Machine.{name}: expected (min, max) with min < max, "
                                 f"got {getattr(self, name)!r}")
            object.__setattr__(self, name, (lo, hi))

    # ------------------------------------------------------------------ derived values
    @property
    def n_pairs(self) -> int:
        """Number of leaf pairs."""
        return int(self.leaf_boundaries_mm.size - 1)

    @property
    def leaf_widths(self) -> np.ndarray:
        """Width (mm) of every leaf pair, from ``-v`` to ``+v``."""
        return np.diff(self.leaf_boundaries_mm)

    @property
    def dose_rate_mu_s(self) -> float:
        """Maximum dose rate in MU per second."""
        return self.max_dose_rate_mu_min / 60.0

    @property
    def mu_per_mm_at_max_speed(self) -> float:
        """MU delivered at the maximum dose rate while a leaf crosses 1 mm at full speed."""
        return self.dose_rate_mu_s / self.max_leaf_speed_mm_s

    def row_overlap(self, iv0: int, n_rows: int, bixel_mm: float) -> np.ndarray:
        """Overlap (mm) of beamlet rows ``iv0 .. iv0 + n_rows - 1`` with each leaf pair.

        Returns an array (n_rows, n_pairs); row ``iv`` covers ``[iv b, (iv + 1) b]``.
        Raises ValueError when a row lies outside the MLC.

        Parameters
        ----------
        iv0 : int
            Index of the first beamlet row along ``v``.
        n_rows : int
            Number of rows.
        bixel_mm : float
            Beamlet size ``b`` (mm).

        Returns
        -------
        np.ndarray
            Overlap (mm) of each row with each leaf pair, (n_rows, n_pairs).
        """
        lo = (iv0 + np.arange(n_rows)) * float(bixel_mm)
        hi = lo + float(bixel_mm)
        e = self.leaf_boundaries_mm
        if n_rows and (lo[0] < e[0] - 1e-6 or hi[-1] > e[-1] + 1e-6):
            raise ValueError(f"beamlet rows from {lo[0]:g} to {hi[-1]:g} mm lie outside the "
                             f"MLC ({e[0]:g} to {e[-1]:g} mm) of machine {self.name}")
        ov = np.minimum(hi[:, None], e[None, 1:]) - np.maximum(lo[:, None], e[None, :-1])
        return np.maximum(ov, 0.0)

    def alignment_note(self, bixel_mm: float) -> str:
        """How the engine's beamlet rows of ``bixel_mm`` meet this MLC's leaves.

        Parameters
        ----------
        bixel_mm : float
            The engine's beamlet size (mm).

        Returns
        -------
        str
            One sentence: rows are leaf pairs, finer or coarser than the leaves, or not
            lined up with the leaf boundaries.
        """
        e = self.leaf_boundaries_mm
        b = float(bixel_mm)
        rows = np.arange(math.ceil(e[0] / b - 1e-9), math.floor(e[-1] / b + 1e-9) + 1) * b
        leaves_on_rows = bool(np.all(np.abs(e / b - np.rint(e / b)) < 1e-6))
        rows_on_leaves = bool(np.all(np.min(np.abs(rows[:, None] - e[None, :]), axis=1) < 1e-6))
        if leaves_on_rows and rows_on_leaves:
            return f"{b:g} mm beamlet rows are leaf pairs (one to one)"
        if leaves_on_rows:
            return (f"{b:g} mm beamlet rows: every leaf covers whole rows (a leaf wider than "
                    "a row delivers the mean of its rows)")
        if rows_on_leaves:
            return (f"{b:g} mm beamlet rows: every row spans whole leaf pairs (it receives "
                    "their overlap-weighted mean)")
        return (f"{b:g} mm beamlet rows do not line up with the leaf boundaries: rows and "
                "leaves are matched by overlap weights, which blurs the sequenced fluence")

    def to_dict(self) -> dict[str, Any]:
        """The machine's settings as plain data (for JSON/YAML; `from_dict` reads it back).

        Returns
        -------
        dict
            Every init field, tuples as lists; ``leaf_boundaries_mm`` (derived) left out.
        """
        d = asdict(self)
        d.pop("leaf_boundaries_mm", None)
        d["leaf_widths_mm"] = [list(g) for g in self.leaf_widths_mm]
        for k, v in d.items():
            if isinstance(v, tuple):
                d[k] = list(v)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Machine:
        """A machine from a mapping (``_target_`` and other ``_``-keys are ignored).

        Parameters
        ----------
        d : Mapping
            Field names to values (as `to_dict` writes or a ``conf/machine`` YAML holds);
            an unknown key raises ValueError.

        Returns
        -------
        Machine
            The validated machine.
        """
        known = {f for f in cls.__dataclass_fields__ if f != "leaf_boundaries_mm"}
        clean = {k: v for k, v in dict(d).items() if not str(k).startswith("_")}
        unknown = sorted(set(clean) - known)
        if unknown:
            raise ValueError(f"machine config: unknown settings {unknown} (known: "
                             f"{sorted(known)})")
        return cls(**clean)


def _pair(g: Any) -> tuple[Any, Any]:
    if isinstance(g, Mapping):
        return g["count"], g["width_mm"]
    if isinstance(g, Sequence) and len(g) == 2:
        return g[0], g[1]
    raise ValueError(f"Machine.leaf_widths_mm: each group is [count, width_mm], got {g!r}")


def load_machine(name_or_path: str | Path = DEFAULT_MACHINE) -> Machine:
    """A machine from ``conf/machine/<name>.yaml`` or a YAML file path.

    Parameters
    ----------
    name_or_path : str or Path
        A name under ``conf/machine`` (default `DEFAULT_MACHINE`) or a ``.yaml``/``.yml``
        path; FileNotFoundError when missing, ValueError (naming the file) when invalid.

    Returns
    -------
    Machine
        The validated machine.
    """
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        p = CONF_DIR / "machine" / f"{name_or_path}.yaml"
    if not p.is_file():
        raise FileNotFoundError(f"machine config {p} not found (known: "
                                f"{sorted(q.stem for q in (CONF_DIR / 'machine').glob('*.yaml'))})")
    doc = yaml.safe_load(p.read_text())
    if not isinstance(doc, Mapping):
        raise ValueError(f"{p}: expected a mapping")
    try:
        return Machine.from_dict(doc)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{p}: {exc}") from None
