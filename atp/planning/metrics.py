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
        return {"vgy": "%", "vgy_cc": "cc", "hi": "1"}.get(self.kind, "Gy")

    @property
    def is_dose(self) -> bool:
        return self.unit == "Gy"


def parse_metric(name: str) -> Metric:
    """Parse a metric name; raise ValueError listing the grammar when it is unknown."""
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


def _percentile(values: np.ndarray, q: float) -> float:
    return float(np.percentile(values, q))


def evaluate_metric(metric: Metric, dose_gy: np.ndarray, *, voxel_cc: float) -> float:
    """Value of ``metric`` for the doses of one ROI's voxels (NaN for an empty ROI)."""
    d = np.asarray(dose_gy, dtype=np.float64).ravel()
    n = d.size
    if n == 0:
        return float("nan")
    k, x = metric.kind, metric.param
    if k == "dmax":
        return float(d.max())
    if k == "dmin":
        return float(d.min())
    if k == "dmean":
        return float(d.mean())
    if k == "dpct":
        return _percentile(d, 100.0 - x)
    if k == "dcc":
        return _percentile(d, float(np.clip(100.0 - 100.0 * x / (n * voxel_cc), 0.0, 100.0)))
    if k == "vgy":
        return 100.0 * np.count_nonzero(d >= x) / n
    if k == "vgy_cc":
        return np.count_nonzero(d >= x) * voxel_cc
    if k == "hi":
        d50 = _percentile(d, 50.0)
        return (_percentile(d, 98.0) - _percentile(d, 2.0)) / d50 if d50 > 0 else float("nan")
    raise ValueError(f"metric kind {k!r}")
