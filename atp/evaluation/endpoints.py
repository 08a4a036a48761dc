"""DVH endpoints of one dose for the comparison tables (rows as in `atp.evaluation.compare`).

Targets, named by rank so that cases with different prescriptions pool (``PTV1`` = the
highest prescription, ``PTV2`` the next, ...): V95 % (share of the target receiving at
least 95 % of its own prescription, the study's coverage endpoint), D98 %, D95 %, D2 %
and Dmean in percent of that prescription, ICRU 83 HI and the Paddick CI.

Organs: Dmean and near-max D0.03cc of every organ, every organ goal metric of the goal
list and every organ endpoint of the site's endpoint list, each also on the EQD2 scale
(``EQD2 <metric>(<roi>)``): the metric evaluated on the voxel-wise EQD2 of the dose
(alpha/beta of the organ, the case's number of fractions). For a Vx endpoint this reads
its threshold x as EQD2, i.e. the study's "evaluating isodoses converted to EQD2": the
physical isodose is `physical_dose_for_eqd2` (x). ROIs named ``*_ipsi`` / ``*_contra``
in the goal or endpoint list keep that name, so left- and right-sided cases pool.

The study's endpoints (the Bonferroni family) are the site's ``endpoints`` list
(`EndpointSpec`, from ``conf/site/<site>.yaml``); rows of listed endpoints carry
``endpoint=True``, every other row ``endpoint=False`` (a supplementary metric).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from atp.cases import PatientCase
from atp.dosimetry import eqd2, homogeneity_index_icru83, paddick_ci, volume_at_dose
from atp.planning.goals import GoalError, expand_roi
from atp.planning.metrics import evaluate_metric, parse_metric
from atp.planning.resolve import ResolvedGoal
from atp.planning.structures import structure_mask

#: alpha/beta (Gy) when a site config names none: 3 Gy for late-responding normal
#: tissue, 10 Gy for tumour (Fowler, Br J Radiol 62 (1989) 679-694; Joiner & van der
#: Kogel, Basic Clinical Radiobiology, 4th ed., ch. 8).
DEFAULT_ALPHA_BETA_GY = {"organ": 3.0, "target": 10.0}
DOSE_SCALES = ("eqd2", "physical")
TARGET_METRICS = {"D98%": True, "D95%": True, "D2%": False, "Dmean": False}  # higher better?
_NAME = re.compile(r"^\s*(?P<metric>[^()\s]+)\s*\(\s*(?P<roi>[^()\s]+)\s*\)\s*$")
_TARGET = re.compile(r"^PTV(\d+)$")
_V_PCT = re.compile(r"^V(\d+(?:\.\d+)?)%$", re.IGNORECASE)


def split_endpoint(name: str) -> tuple[str, str]:
    """``"V20Gy(lungs)"`` -> ``("V20Gy", "lungs")``; ValueError for another form.

    Parameters
    ----------
    name : str
        Endpoint name ``<metric>(<roi>)``.

    Returns
    -------
    tuple of str
        ``(metric, roi)``.
    """
    m = _NAME.match(str(name))
    if not m:
        raise ValueError(f"endpoint {name!r}: expected '<metric>(<roi>)', e.g. 'V20Gy(lungs)'")
    return m.group("metric"), m.group("roi")


def _check_endpoint(name: str) -> None:
    metric, roi = split_endpoint(name)
    if _TARGET.match(roi):
        if metric in ("CI", "HI") or _V_PCT.match(metric) or metric in TARGET_METRICS:
            return
        raise ValueError(f"endpoint {name!r}: target endpoints are V<x>%, CI, HI and "
                         f"{', '.join(TARGET_METRICS)} (in % of the target's prescription)")
    parse_metric(metric)  # organ metrics follow the goal-list grammar


@dataclass(frozen=True)
class EndpointSpec:
    """The study's endpoints of one site (and institution): the Bonferroni family.

    Attributes
    ----------
    metrics : tuple of str
        Endpoint names ``<metric>(<roi>)``: targets as ``PTV<rank>`` (``V95%``, ``CI``,
        ``HI``, ``D98%``, ...), organs with goal-list metrics and ROI names (``*_ipsi`` /
        ``*_contra`` allowed).
    dose_scale : str
        ``"eqd2"``: organ endpoints on the voxel-wise EQD2 scale (the study's); or
        ``"physical"``.
    alpha_beta_gy : mapping
        ``organ`` and ``target`` defaults and per-ROI values (Gy).
    source : str
        Where the list comes from (for error messages and reports).
    """

    metrics: tuple[str, ...]
    dose_scale: str = "eqd2"
    alpha_beta_gy: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_ALPHA_BETA_GY))
    source: str = ""

    def __post_init__(self) -> None:
        where = f"{self.source}: " if self.source else ""
        if self.dose_scale not in DOSE_SCALES:
            raise ValueError(f"{where}dose_scale must be one of {DOSE_SCALES}, "
                             f"got {self.dose_scale!r}")
        if len(set(self.metrics)) != len(self.metrics):
            raise ValueError(f"{where}endpoint list has duplicates: {list(self.metrics)}")
        for name in self.metrics:
            try:
                _check_endpoint(name)
            except ValueError as exc:
                raise ValueError(f"{where}{exc}") from None
        for key, value in self.alpha_beta_gy.items():
            if isinstance(value, bool) or not float(value) > 0.0:
                raise ValueError(f"{where}alpha_beta_gy.{key} must be > 0 Gy, got {value!r}")

    def alpha_beta(self, roi: str, *, role: str = "organ") -> float:
        """alpha/beta (Gy) of ``roi``: its own entry, else the ``role`` default.

        Parameters
        ----------
        roi : str
            ROI name.
        role : str, optional
            ``"target"`` or ``"organ"`` (default): which default applies.

        Returns
        -------
        float
            alpha/beta (Gy).
        """
        ab = {**DEFAULT_ALPHA_BETA_GY, **self.alpha_beta_gy}
        return float(ab.get(roi, ab["target" if role == "target" else "organ"]))

    def row_name(self, name: str) -> str:
        """The endpoint-table metric that holds endpoint ``name`` (EQD2 organ rows).

        Parameters
        ----------
        name : str
            Endpoint name ``<metric>(<roi>)``.

        Returns
        -------
        str
            ``"EQD2 <name>"`` for an organ endpoint on the EQD2 scale, else ``name``.
        """
        _, roi = split_endpoint(name)
        if self.dose_scale == "eqd2" and not _TARGET.match(roi):
            return f"EQD2 {name}"
        return name

    @property
    def organ_endpoints(self) -> list[tuple[str, str]]:
        """(ROI, metric) pairs of the organ endpoints (targets left out)."""
        return [split_endpoint(n) for n in self.metrics
                if not _TARGET.match(split_endpoint(n)[1])]


def endpoint_spec(site_cfg: Mapping, institution: Mapping | None = None) -> EndpointSpec | None:
    """The site's endpoint list (``endpoints:`` in the site config) plus the institution's.

    An institution may append endpoints for a site under ``endpoints: {<site>: [...]}``.

    Parameters
    ----------
    site_cfg : mapping
        The site config (``name``, ``endpoints: {metrics, dose_scale, alpha_beta_gy}``).
    institution : mapping, optional
        The institution overlay; None adds nothing.

    Returns
    -------
    EndpointSpec or None
        None when the site config has no ``endpoints`` block.
    """
    name = site_cfg.get("name", "?")
    block = site_cfg.get("endpoints")
    if not block:
        return None
    source = f"site/{name}.yaml:endpoints"
    if not isinstance(block, Mapping) or not isinstance(block.get("metrics"), Sequence):
        raise ValueError(f"{source}: expected {{metrics: [...], dose_scale, alpha_beta_gy}}")
    metrics = [str(m) for m in block["metrics"]]
    extra = ((institution or {}).get("endpoints") or {}).get(name) or []
    metrics += [str(m) for m in extra if str(m) not in metrics]
    return EndpointSpec(metrics=tuple(metrics), dose_scale=str(block.get("dose_scale", "eqd2")),
                        alpha_beta_gy=dict(block.get("alpha_beta_gy") or {}), source=source)


def plan_endpoints(case: PatientCase, dose_gy, *, plan: str, site: str, institution: str,
                   resolved: Sequence[ResolvedGoal] = (), mu: float | None = None,
                   endpoints: EndpointSpec | None = None) -> list[dict]:
    """Endpoint rows of ``dose_gy`` (one plan of one case).

    Parameters
    ----------
    case : PatientCase
    dose_gy : ndarray
        The plan's dose on the case grid.
    plan, site, institution : str
        Labels of the rows.
    resolved : list of ResolvedGoal
        Goals whose organ metrics are added (the protocol goal list).
    mu : float, optional
        Total MU (all fractions); gives a ``MU per fraction`` row.
    endpoints : EndpointSpec, optional
        The study's endpoints; their rows get ``endpoint=True``, every other row
        ``endpoint=False``. Without it the rows have no ``endpoint`` column and
        `compare_plans` counts every metric in Bonferroni's m.

    Returns
    -------
    list of dict
        One row per metric: case, site, institution, plan, metric, value, unit,
        higher_is_better, kind (and endpoint, with ``endpoints``).
    """
    base = {"case": case.patient_id, "site": site, "institution": institution, "plan": plan}
    listed = {endpoints.row_name(n) for n in endpoints.metrics} if endpoints else set()
    rows: list[dict] = []

    def add(metric, value, unit, higher, kind):
        row = {**base, "metric": metric, "value": float(value), "unit": unit,
               "higher_is_better": higher, "kind": kind}
        if endpoints is not None:
            row["endpoint"] = metric in listed
        rows.append(row)

    kw = {"spacing_mm": case.spacing_mm}
    body = case.body_mask
    ranked = sorted(case.prescriptions, key=lambda p: -p.dose_gy)
    target_vx = {95.0}  # V95 % always; other V<x>% of targets when the list names them
    for metric, roi in (split_endpoint(n) for n in (endpoints.metrics if endpoints else ())):
        if _TARGET.match(roi) and _V_PCT.match(metric):
            target_vx.add(float(_V_PCT.match(metric).group(1)))
    for k, p in enumerate(ranked, start=1):
        m, label = case.mask(p.target), f"PTV{k}"
        for x in sorted(target_vx, reverse=True):
            add(f"V{x:g}%({label})", volume_at_dose(dose_gy, m, threshold_gy=x / 100.0
                                                   * p.dose_gy), "%", True, "target")
        for name, higher in TARGET_METRICS.items():
            value = evaluate_metric(parse_metric(name), dose_gy, m, **kw)
            add(f"{name}({label})", 100.0 * value / p.dose_gy, "%Rx", higher, "target")
        add(f"HI({label})", homogeneity_index_icru83(dose_gy, m), "1", False, "index")
        add(f"CI({label})", paddick_ci(dose_gy, m, prescription_gy=p.dose_gy,
                                       body_mask=body), "1", True, "index")
    organ_metrics = {(r.goal.metric.name, _label(r)) for r in resolved if r.role == "organ"}
    organ_metrics |= {(n, roi) for name in case.organs for n, roi in
                      (("Dmean", name), ("D0.03cc", name))}
    if endpoints:
        organ_metrics |= set(endpoints.organ_endpoints)
    n_fx = case.n_fractions or 1
    spec = endpoints or EndpointSpec(metrics=())
    eqd2_maps: dict[float, np.ndarray] = {}
    for metric_name, roi in sorted(organ_metrics):
        mask = _organ_mask(case, roi)
        if mask is None or not mask.any():
            continue
        metric = parse_metric(metric_name)
        add(f"{metric_name}({roi})", evaluate_metric(metric, dose_gy, mask, **kw),
            metric.unit, False, "organ")
        ab = spec.alpha_beta(roi if roi in spec.alpha_beta_gy else _resolve(case, roi))
        if ab not in eqd2_maps:
            eqd2_maps[ab] = eqd2(dose_gy, n_fractions=n_fx, alpha_beta_gy=ab)
        add(f"EQD2 {metric_name}({roi})", evaluate_metric(metric, eqd2_maps[ab], mask, **kw),
            metric.unit, False, "organ")
    if mu is not None:
        add("MU per fraction", mu / n_fx, "MU", False, "delivery")
    return rows


def _label(goal: ResolvedGoal) -> str:
    """The goal list's ROI name when it is side-relative (``lung_ipsi``), else the ROI."""
    return goal.goal.roi if goal.goal.roi.endswith(("_ipsi", "_contra")) else goal.roi


def _resolve(case: PatientCase, roi: str) -> str:
    """``*_ipsi`` / ``*_contra`` resolved through the case's laterality; others as named."""
    if not roi.endswith(("_ipsi", "_contra")):
        return roi
    try:
        return expand_roi(roi, case.rois, laterality=case.metadata.get("laterality"))[0]
    except GoalError:
        return roi


def _organ_mask(case: PatientCase, roi: str) -> np.ndarray | None:
    return structure_mask(case, _resolve(case, roi))


def voxel_difference_to_prediction(case: PatientCase, plan_gy, predicted_gy, *,
                                   site: str, institution: str) -> dict:
    """|D_plan - D_pred| / D_Rx within the body: mean and 95th percentile, in %.

    Parameters
    ----------
    case : PatientCase
        The patient (body mask, highest prescription D_Rx).
    plan_gy, predicted_gy : np.ndarray
        Plan and predicted dose (Gy) on the case grid, (z, y, x).
    site, institution : str
        Labels copied into the row.

    Returns
    -------
    dict
        ``case, site, institution, mean_abs_diff_pct_rx, p95_abs_diff_pct_rx`` (% of D_Rx).
    """
    rx = case.max_prescription_gy or 1.0
    body = case.body_mask
    diff = np.abs(plan_gy[body].astype(np.float64) - predicted_gy[body]) / rx * 100.0
    return {"case": case.patient_id, "site": site, "institution": institution,
            "mean_abs_diff_pct_rx": float(diff.mean()),
            "p95_abs_diff_pct_rx": float(np.percentile(diff, 95))}
