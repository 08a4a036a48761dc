"""``review.py step=prepare``: blinded pairs, one HTML packet per reviewer, the answer key.

Layout written under ``review_dir`` (both folders land together, never half-written):

- ``packets/review_<reviewer>.html``: what each reviewer receives;
- ``key/key.json``: the answer key (case code -> source, which plan is the new one,
  packet hashes, case orders, seed); ``key/endpoints.csv``: the endpoints of every plan
  under its real label, for the analysis. Keep ``key/`` away from the reviewers.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tqdm import tqdm

from atp.cases import PatientCase
from atp.evaluation.compare import write_table
from atp.evaluation.endpoints import plan_endpoints
from atp.evaluation.plan_store import load_case_plans
from atp.io.atomic import atomic_write_text
from atp.names import INSTITUTIONS, SITES
from atp.planning import goal_report, resolve_goals
from atp.planning.setup import goal_list_for
from atp.review import blinding
from atp.review.answers import KEY_FORMAT, KEY_VERSION, ReviewError
from atp.review.images import png_bytes
from atp.review.packet import CaseView, render_packet
from atp.review.sources import SourceCase, find_cases
from atp.sites import load_institution_config, load_site_config
from atp.viz.review import pair_dose_wash, pair_dvh

log = logging.getLogger(__name__)
COMPARATOR = "comparator"  # the comparator's plan name in key/endpoints.csv
DEFAULT_FORBIDDEN = ("ATP", "MNL", "clinical", "auto")
_REVIEWER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def _resolved_goals(case: PatientCase, site: str, institution: str) -> list:
    """The site's protocol goal list (with the institution's overlay) on this case."""
    if site not in SITES:
        return []
    inst = load_institution_config(institution) if institution in INSTITUTIONS else None
    resolved, _ = resolve_goals(case, goal_list_for(load_site_config(site), inst))
    return resolved


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def _goal_table(case, doses, resolved) -> tuple[str, list[str], list]:
    reports = [goal_report(case, d, resolved) for d in doses]
    rows = []
    for outcomes in zip(*reports, strict=True):
        row = [(outcomes[0].label, "text"), (str(outcomes[0].priority), "num")]
        for o in outcomes:
            row += [(f"{_fmt(o.achieved)} {o.unit}".strip(), "num"),
                    ("met" if o.met else "not met", "met" if o.met else "unmet")]
        rows.append(row)
    header = ["protocol goal", "priority", "Plan 1", "Plan 1 meets", "Plan 2", "Plan 2 meets"]
    return "Protocol goals", header, rows


def _endpoint_table(rows_by_plan: Sequence[list[dict]]) -> tuple[str, list[str], list]:
    values = [{r["metric"]: r for r in rows} for rows in rows_by_plan]
    rows = []
    for metric, r in values[0].items():
        if metric.startswith("EQD2 ") or metric not in values[1]:
            continue  # same fractionation for both plans: EQD2 adds nothing here
        rows.append([(metric, "text"), (r["unit"], "text"), (_fmt(r["value"]), "num"),
                     (_fmt(values[1][metric]["value"]), "num")])
    return "Dose-volume endpoints", ["endpoint", "unit", "Plan 1", "Plan 2"], rows


def _case_view(src: SourceCase, code: str, new_first: bool, *, new_label: str,
               dpi: int) -> tuple[CaseView, list[dict], list[str]]:
    """The blinded view of one case, its endpoint rows (real labels) and its plan labels."""
    plans = load_case_plans(src.path)
    case = plans.case
    new, comp = plans.doses_gy[new_label], plans.doses_gy[plans.comparator]
    doses = (new, comp) if new_first else (comp, new)
    resolved = _resolved_goals(case, src.site, src.institution)
    kw = {"site": src.site, "institution": src.institution, "resolved": resolved}
    rows = {new_label: plan_endpoints(case, new, plan=new_label, **kw),
            COMPARATOR: plan_endpoints(case, comp, plan=COMPARATOR, **kw)}
    ordered = [rows[new_label], rows[COMPARATOR]] if new_first else [
        rows[COMPARATOR], rows[new_label]]
    rx = "; ".join(f"{p.target}: {p.dose_gy:g} Gy in {p.n_fractions} fractions"
                   for p in sorted(case.prescriptions, key=lambda p: -p.dose_gy))
    view = CaseView(code=code, prescription=rx or "not recorded")
    view.figures.append(("Dose-volume histograms: Plan 1 solid, Plan 2 dashed", png_bytes(
        pair_dvh(case, doses, title=f"Case {code}: DVH"), dpi=dpi)))
    view.figures.append(("Dose distributions on one colour scale, and their difference",
                         png_bytes(pair_dose_wash(case, doses, title=f"Case {code}: dose"),
                                   dpi=dpi)))
    if resolved:
        view.tables.append(_goal_table(case, doses, resolved))
    view.tables.append(_endpoint_table(ordered))
    key_rows = [{**r, "case": code, "label": new_label if r["plan"] == new_label
                 else plans.comparator} for r in rows[new_label] + rows[COMPARATOR]]
    return view, key_rows, list(plans.doses_gy)


def _write_packets(staging: Path, views: Sequence[CaseView], ids: Sequence[str],
                   orders: Sequence[Sequence[int]], codes: Sequence[str], *,
                   questions: Mapping[str, str] | None, terms: Sequence[str],
                   tokens: Sequence[str]) -> list[dict]:
    """Render, check and write every reviewer's packet; their key entries."""
    packets = []
    for reviewer, order in zip(ids, orders, strict=True):
        page, digest = render_packet([views[i] for i in order], reviewer=reviewer,
                                     questions=questions)
        blinding.check_blinded(page, where=f"packet of reviewer {reviewer}", terms=terms,
                               tokens=tokens)
        name = f"packets/review_{reviewer}.html"
        atomic_write_text(staging / name, page)
        packets.append({"id": reviewer, "packet": name, "packet_hash": digest,
                        "order": [codes[i] for i in order]})
    return packets


def _check_reviewers(reviewers: Sequence[str]) -> list[str]:
    ids = [str(r) for r in reviewers]
    if not ids:
        raise ReviewError("review.reviewers: at least one reviewer is needed")
    for r in ids:
        if not _REVIEWER_ID.match(r):
            raise ReviewError(f"review.reviewers: {r!r} is not a usable reviewer ID "
                              "(letters, digits, '_', '.', '-'; it names the packet file)")
    if len(set(ids)) != len(ids):
        raise ReviewError(f"review.reviewers: duplicate IDs in {ids}")
    return ids


def prepare_review(runs: Sequence[str | os.PathLike], review_dir: str | os.PathLike, *,
                   reviewers: Sequence[str], seed: int, new_label: str = "ATP",
                   questions: Mapping[str, str] | None = None,
                   forbidden_terms: Sequence[str] = DEFAULT_FORBIDDEN, dpi: int = 80,
                   overwrite: bool = False, progress: bool = True) -> dict:
    """Build the packets and the key of a review of ``runs`` (see the module docstring).

    Parameters
    ----------
    runs : sequence of str or os.PathLike
        Evaluation run folders or multirun sweep folders holding ``plans/*.npz``.
    review_dir : str or os.PathLike
        Where ``packets/`` and ``key/`` go.
    reviewers : sequence of str
        Reviewer IDs, one packet each.
    seed : int
        The recorded seed of every draw (`atp.review.blinding`).
    new_label : str, optional
        The label of the plan under review in the plans files; default ``"ATP"``.
    questions : mapping of str to str, optional
        Wording of the questions (``acceptable`` with ``{plan}``, ``preferred``,
        ``ai_generated``); the defaults otherwise.
    forbidden_terms : sequence of str, optional
        Strings no packet may contain (case-insensitive), on top of every plan label,
        patient ID, file and run name of the review.
    dpi : int, optional
        Resolution of the packet figures (dots per inch); default 80.
    overwrite : bool, optional
        Replace an earlier review in ``review_dir`` (its answers would no longer match
        the new packets).
    progress : bool, optional
        Show a progress bar over the cases.

    Returns
    -------
    dict
        ``{"review_dir", "cases", "reviewers", "packets", "key"}``.
    """
    review_dir = Path(review_dir)
    key_path = review_dir / "key" / "key.json"
    if key_path.exists() and not overwrite:
        raise ReviewError(f"{key_path}: this folder already holds a prepared review; answer "
                          "files of its packets would no longer match. Use another "
                          "review_dir, or overwrite=true")
    ids = _check_reviewers(reviewers)
    sources = find_cases(runs, new_label=new_label)
    codes = blinding.case_codes(len(sources), seed=seed)
    first = blinding.new_plan_first([(s.site, s.institution) for s in sources], seed=seed)
    orders = blinding.reviewer_orders(len(sources), len(ids), seed=seed)
    views, endpoint_rows, labels = [], [], {new_label}
    for src, code, nf in tqdm(list(zip(sources, codes, first, strict=True)),
                              desc="review cases", disable=not progress):
        view, rows, plan_labels = _case_view(src, code, nf, new_label=new_label, dpi=dpi)
        views.append(view)
        endpoint_rows += rows
        labels.update(plan_labels)
    terms = [*forbidden_terms, *(lab for lab in labels if len(lab) >= 3)]
    tokens = {s.patient_id for s in sources} | {s.path.name for s in sources}
    tokens |= {s.path.stem for s in sources} | {p for s in sources for p in s.run.split("/")}
    tokens = [t for t in tokens if blinding.checkable_token(t)]
    staging = review_dir / ".prepare-staging"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        packets = _write_packets(staging, views, ids, orders, codes, questions=questions,
                                 terms=terms, tokens=tokens)
        key = {"format": KEY_FORMAT, "version": KEY_VERSION, "seed": int(seed),
               "new_label": new_label, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "reviewers": packets,
               "cases": [{"code": code, "new_plan": 1 if nf else 2,
                          "comparator": s.comparator, "site": s.site,
                          "institution": s.institution, "run": s.run,
                          "patient_id": s.patient_id, "source": str(s.path.resolve())}
                         for s, code, nf in zip(sources, codes, first, strict=True)]}
        atomic_write_text(staging / "key" / "key.json", json.dumps(key, indent=1) + "\n")
        write_table(endpoint_rows, staging / "key" / "endpoints.csv")
        for name in ("packets", "key"):
            shutil.rmtree(review_dir / name, ignore_errors=True)
            os.replace(staging / name, review_dir / name)
        staging.rmdir()
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("review of %d cases for %d reviewers: %s", len(sources), len(ids),
             review_dir / "packets")
    return {"review_dir": review_dir, "cases": len(sources), "reviewers": ids,
            "packets": [review_dir / p["packet"] for p in packets], "key": key_path}
