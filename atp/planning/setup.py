"""Combine a site's facts with an institution's overlay (plain mappings, no Hydra).

An institution overlay may hold, per site: ``beams`` (a technique replacing the site's, or
a mix of variants, see `atp.planning.techniques`),
``prescriptions``, ``tolerance`` ({roi or goal name: t}) and ``goals`` (appended).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from atp.planning.goals import GoalList
from atp.planning.techniques import beam_config, technique_for_case, technique_variants


def _per_site(institution: Mapping | None, key: str, site: str) -> Any:
    if not institution:
        return None
    return (institution.get(key) or {}).get(site)


def goal_list_for(site_cfg: Mapping, institution: Mapping | None = None) -> GoalList:
    """The site's goal list followed by the institution's extra goals for that site.

    Parameters
    ----------
    site_cfg : Mapping
        The site's facts (``conf/site/<name>.yaml``; needs ``name``).
    institution : Mapping, optional
        The institution overlay (``conf/institution/<name>.yaml``); None: no overlay.

    Returns
    -------
    GoalList
        The site's ``goals``, then the institution's ``goals.<site>``.
    """
    name = site_cfg["name"]
    goals = GoalList.from_dicts(site_cfg.get("goals") or [], source=f"site/{name}.yaml")
    extra = _per_site(institution, "goals", name)
    if extra:
        goals = goals.extended(GoalList.from_dicts(
            extra, source=f"institution/{institution.get('name', '?')}.yaml:goals.{name}"))
    return goals


def tolerances_for(site_cfg: Mapping, institution: Mapping | None = None,
                   overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Institution tolerances for the site, then per-run/per-patient overrides on top.

    Parameters
    ----------
    site_cfg : Mapping
        The site's facts (``conf/site/<name>.yaml``; needs ``name``).
    institution : Mapping, optional
        The institution overlay (``conf/institution/<name>.yaml``); None: no overlay.
    overrides : Mapping of str to float, optional
        Tolerances (%) by ROI or goal name that replace the institution's.

    Returns
    -------
    dict of str to float
        Tolerance (%) by ROI or goal name.
    """
    out = dict(_per_site(institution, "tolerance", site_cfg["name"]) or {})
    out.update(overrides or {})
    return {str(k): float(v) for k, v in out.items()}


def beam_config_for(site_cfg: Mapping, institution: Mapping | None = None, *,
                    technique: str | None = None, case=None) -> dict:
    """The institution's technique for the site, else the site's default beams.

    Where the institution mixes techniques (a list of variants, `atp.planning.techniques`)
    the variant is ``technique`` by name, else the one of ``case`` (its stored technique,
    or a stable draw from its id, `technique_for_case`), else the first variant.

    Parameters
    ----------
    site_cfg : Mapping
        The site's facts (``conf/site/<name>.yaml``; needs ``name``).
    institution : Mapping, optional
        The institution overlay (``conf/institution/<name>.yaml``); None: no overlay.
    technique : str, optional
        A variant name; ValueError when the mix has none of that name.
    case : PatientCase, optional
        The patient, whose variant is used when ``technique`` is None.

    Returns
    -------
    dict
        The technique configuration for `atp.dose.beams_from_config`.
    """
    variants = technique_variants(site_cfg, institution)
    if technique is None and case is not None:
        technique = technique_for_case(site_cfg, institution, patient_id=case.patient_id,
                                       metadata=case.metadata)
    if technique is None:
        return beam_config(variants[0])
    for v in variants:
        if v["name"] == technique:
            return beam_config(v)
    raise ValueError(f"site '{site_cfg['name']}' at institution "
                     f"'{(institution or {}).get('name')}': no technique {technique!r} "
                     f"(known: {[v['name'] for v in variants]})")


def prescription_schemes_for(site_cfg: Mapping, institution: Mapping | None = None
                             ) -> list[dict]:
    """The institution's prescription schemes for the site, else the site's.

    Parameters
    ----------
    site_cfg : Mapping
        The site's facts (``conf/site/<name>.yaml``; needs ``name``).
    institution : Mapping, optional
        The institution overlay (``conf/institution/<name>.yaml``); None: no overlay.

    Returns
    -------
    list of dict
        Copies of the scheme mappings (empty when neither config has any).
    """
    schemes = _per_site(institution, "prescriptions", site_cfg["name"])
    return [dict(s) for s in (schemes or site_cfg.get("prescriptions") or [])]


BEAM_SOURCES = ("patient", "template")


def case_beams(case, site_cfg: Mapping, institution: Mapping | None = None, *,
               source: str = "patient") -> tuple[list, str]:
    """The beams ``case`` is planned with, and where they came from.

    Parameters
    ----------
    case : PatientCase
        The patient (metadata ``beams`` and ``laterality``, targets for the isocentre).
    site_cfg : Mapping
        The site's facts (``conf/site/<name>.yaml``; needs ``name``).
    institution : Mapping, optional
        The institution overlay (``conf/institution/<name>.yaml``); None: no overlay.
    source : str, optional
        ``patient``: the case's own beams when it carries an imported RTPLAN (the
        study kept each patient's original beam configuration), else the institution's
        template; ``template``: always the template (`beam_config_for`), isocentre at the
        targets' centre.

    Returns
    -------
    beams : list of `atp.dose.Beam`
    origin : str
        ``"patient RTPLAN"`` or ``"institution template"``.
    """
    from atp.dose import Beam, beams_from_config, default_isocenter_mm

    if source not in BEAM_SOURCES:
        raise ValueError(f"beams='{source}' is not one of {BEAM_SOURCES}")
    stored = case.metadata.get("beams") if source == "patient" else None
    if stored:
        return [Beam.from_dict(b) for b in stored], "patient RTPLAN"
    beams = beams_from_config(beam_config_for(site_cfg, institution, case=case),
                              isocenter_mm=default_isocenter_mm(case),
                              laterality=case.metadata.get("laterality"))
    return beams, "institution template"
