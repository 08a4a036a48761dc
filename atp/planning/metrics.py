"""Goal metrics: parse names such as ``D95%``, ``D0.03cc``, ``V20Gy``, and evaluate them.

Grammar (case-insensitive ``D``/``V``):

==============  ===============================================  ========
metric          meaning                                           unit
==============  ===============================================  ========
``Dmax``        point maximum dose                                Gy
``Dmin``        point minimum dose                                Gy
``Dmean``       mean dose                                         Gy
``D<x>%``       dose to the hottest x % of the ROI                Gy
``D<x>cc``      dose to the hottest x cc of the ROI               Gy
``V<x>Gy``      share of the ROI receiving >= x Gy                %
``V<x>Gy_cc``   volume of the ROI receiving >= x Gy               cc
``HI``          ICRU 83 homogeneity index (D2 - D98) / D50        1
==============  ===============================================  ========

Dx % follows the OpenKBP convention (numpy's linear percentile at 100 - x).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from atp import dosimetry

_D_PCT = re.compile(r"^d(\d+(?:\.\d+)?)%$")
_D_CC = re.compile(r"^d(\d+(?:\.\d+)?)cc$")
_V_GY = re.compile(r"^v(\d+(?:\.\d+)?)gy(_cc|%)?$")


@dataclass(frozen=True)
class Metric:
    """A parsed metric. ``kind`` is one of dmax, dmin, dmean, dpct, dcc, vgy, vgy_cc, hi."""

    name: str
    kind: str
    param: float = 0.0  # x in Dx%, Dxcc, VxGy

    @property
    def unit(self) -> str:
        """Unit of the metric's value: ``Gy``, ``%``, ``cc`` or ``1`` (HI)."""
        return {"vgy": "%", "vgy_cc": "cc", "hi": "1"}.get(self.kind, "Gy")

    @property
    def is_dose(self) -> bool:
        """Whether the value is a dose in Gy."""
        return self.unit == "Gy"


def parse_metric(name: str) -> Metric:
    """Parse a metric name; raise ValueError listing the grammar when it is unknown.

    Parameters
    ----------
    name : str
        A metric name of the module's grammar, e.g. ``D95%``, ``D0.03cc``, ``V20Gy``
        (case and spaces ignored).

    Returns
    -------
    Metric
        The parsed metric, ``name`` kept as given.
    """
    s = str(name).strip().lower().replace(" ", "")
    simple = {"dmax": "dmax", "dmin": "dmin", "dmean": "dmean", "hi": "hi"}
    if s in simple:
        return Metric(name, simple[s])
    if m := _D_PCT.match(s):
        x = float(m.group(1))
        if not 0.0 <= x <= 100.0:
            raise ValueError(f"metric '{name}': percentage {x} outside [0, 100]")
        return Metric(name, "dpct", x)
    if m := _D_CC.match(s):
        return Metric(name, "dcc", float(m.group(1)))
    if m := _V_GY.match(s):
        return Metric(name, "vgy_cc" if m.group(2) == "_cc" else "vgy", float(m.group(1)))
    raise ValueError(
        f"unknown metric '{name}' (known: Dmax, Dmin, Dmean, D<x>%, D<x>cc, V<x>Gy, "
        "V<x>Gy_cc, HI)"
    )


def evaluate_metric(metric: Metric, dose_gy: np.ndarray, mask: np.ndarray, *,
                    spacing_mm) -> float:
    """Value of ``metric`` for the voxels of ``mask`` (NaN for an empty mask).

    The computations are those of `atp.dosimetry` (numpy's linear percentiles).

    Parameters
    ----------
    metric : Metric
        The metric to evaluate (`parse_metric`).
    dose_gy : np.ndarray
        Dose (Gy) on the case grid, (z, y, x).
    mask : np.ndarray
        Boolean ROI mask, same shape as ``dose_gy``.
    spacing_mm : tuple of 3 floats
        Voxel size (mm), (z, y, x); used by the cc metrics.

    Returns
    -------
    float
        The value in the metric's unit (``metric.unit``: Gy, %, cc or 1 for HI).
    """
    k, x = metric.kind, metric.param
    if k == "dmax":
        return dosimetry.max_dose(dose_gy, mask)
    if k == "dmin":
        return dosimetry.min_dose(dose_gy, mask)
    if k == "dmean":
        return dosimetry.mean_dose(dose_gy, mask)
    if k == "dpct":
        return dosimetry.dose_at_volume_percent(dose_gy, mask, percent=x)
    if k == "dcc":
        return dosimetry.dose_at_volume_cc(dose_gy, mask, volume_cc=x, spacing_mm=spacing_mm)
    if k in ("vgy", "vgy_cc"):
        return dosimetry.volume_at_dose(dose_gy, mask, threshold_gy=x, spacing_mm=spacing_mm,
                                        unit="percent" if k == "vgy" else "cc")
    if k == "hi":
        return dosimetry.homogeneity_index_icru83(dose_gy, mask)
    raise ValueError(f"metric kind {k!r}")
