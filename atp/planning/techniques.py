"""Beam technique mixes of an institution (the study's Table 1) and their assignment.

An institution's ``beams.<site>`` is one technique (a mapping that
`atp.dose.beams_from_config` reads) or a list of *variants*, each such a mapping plus:

- ``name``: a label unique within the list (stored with the patient);
- ``cases``: the share of the institution's patients planned with it, as Table 1 counts
  them (where the table gives alternatives without counts, e.g. "2/4-arc", the count is
  split evenly, so it may be fractional);
- ``mlc`` (IMRT, optional): ``static`` (sIMRT, step and shoot) or ``dynamic`` (dIMRT,
  sliding window), a delivery fact for leaf sequencing; the fluence optimization does
  not depend on it.

The first variant is the institution's default when no patient is named (list the
table's most common technique first). A synthetic cohort assigns the variants to its
patients in the table's proportions (`assign_variants`, from a recorded seed) and stores
the choice in the case metadata (``technique``: institution and name); `technique_for_case`
reads it back, so that evaluation and ``plan.py`` plan the patient with the same beams; a
case without one gets the first variant.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

#: Keys of a variant that describe the mix, not the beams.
MIX_KEYS = ("cases",)
METADATA_KEY = "technique"


def technique_variants(site_cfg: Mapping, institution: Mapping | None = None) -> list[dict]:
    """The variants of the institution's technique for the site (else the site's beams).

    A single technique gives one variant (named after its technique unless it has a
    ``name``, with ``cases`` 1 unless given). Raises ValueError naming the config for a
    malformed list.

    Parameters
    ----------
    site_cfg : Mapping
        The site's facts (``conf/site/<name>.yaml``; needs ``name``).
    institution : Mapping, optional
        The institution overlay (``conf/institution/<name>.yaml``); None: no overlay.

    Returns
    -------
    list of dict
        Copies of the variants, in config order, each with ``name``, ``cases`` and its
        technique keys.
    """
    site = site_cfg["name"]
    inst = (institution or {}).get("name", "?")
    entry = ((institution or {}).get("beams") or {}).get(site)
    where = f"institution/{inst}.yaml:beams.{site}"
    if not entry:
        entry, where = site_cfg.get("beams"), f"site/{site}.yaml:beams"
    if not entry:
        raise ValueError(f"site '{site}': no beams in the site or institution config")
    if isinstance(entry, Mapping):
        one = dict(entry)
        one.setdefault("name", str(one.get("technique", "default")))
        one.setdefault("cases", 1)
        entry = [one]
    if not isinstance(entry, Sequence) or isinstance(entry, str) or not entry:
        raise ValueError(f"{where}: expected a technique mapping or a non-empty list of "
                         f"variants, got {entry!r}")
    variants, names = [], set()
    for i, v in enumerate(entry):
        if not isinstance(v, Mapping) or "name" not in v or "technique" not in v:
            raise ValueError(f"{where}[{i}]: a variant needs 'name', 'cases' and a technique "
                             f"('technique: imrt|vmat' and its beams), got {v!r}")
        cases = v.get("cases")
        if isinstance(cases, bool) or not isinstance(cases, int | float) or not cases > 0:
            raise ValueError(f"{where}[{i}] ({v['name']}): 'cases' must be a number > 0, "
                             f"got {cases!r}")
        if v["name"] in names:
            raise ValueError(f"{where}: variant name {v['name']!r} appears twice")
        if v.get("mlc") not in (None, "static", "dynamic"):
            raise ValueError(f"{where}[{i}] ({v['name']}): 'mlc' must be static or dynamic, "
                             f"got {v.get('mlc')!r}")
        names.add(v["name"])
        variants.append(dict(v))
    return variants


def beam_config(variant: Mapping) -> dict:
    """The variant's technique configuration (for `atp.dose.beams_from_config`).

    Parameters
    ----------
    variant : Mapping
        One variant of `technique_variants`.

    Returns
    -------
    dict
        The variant without its mix keys (``MIX_KEYS``).
    """
    return {k: v for k, v in variant.items() if k not in MIX_KEYS}


def apportion(shares: Sequence[float], n: int) -> list[int]:
    """Largest-remainder apportionment of ``n`` patients to ``shares`` (ties: earlier).

    Parameters
    ----------
    shares : Sequence of float
        Relative shares, each > 0 (need not sum to 1).
    n : int
        Number of patients, >= 0.

    Returns
    -------
    list of int
        Patients per share, summing to ``n``.
    """
    w = [Fraction(str(float(s))) for s in shares]
    if not w or any(x <= 0 for x in w):
        raise ValueError(f"shares must be a non-empty list of numbers > 0, got {list(shares)}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    total = sum(w)
    exact = [x * n / total for x in w]
    counts = [int(e) for e in exact]  # floor (all >= 0)
    order = sorted(range(len(w)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: n - sum(counts)]:
        counts[i] += 1
    return counts


def _permuted(counts: Sequence[int], seed: int | Sequence[int]) -> list[int]:
    labels = np.repeat(np.arange(len(counts)), counts)
    seeds = [int(s) for s in (seed if isinstance(seed, Sequence) else [seed])]
    return [int(i) for i in np.random.default_rng(seeds).permutation(labels)]


def assign_by_share(shares: Sequence[float], n: int, *, seed: int | Sequence[int]) -> list[int]:
    """Indices into ``shares`` for ``n`` patients, in the shares' proportions.

    The counts are `apportion` (exact proportions up to rounding), their order a
    permutation drawn from ``seed``. Deterministic for (shares, n, seed).

    Parameters
    ----------
    shares : Sequence of float
        Relative shares, each > 0.
    n : int
        Number of patients, >= 0.
    seed : int or Sequence of int
        Seed of numpy's default generator for the order.

    Returns
    -------
    list of int
        Index into ``shares`` for each of the ``n`` patients.
    """
    return _permuted(apportion(shares, n), seed)


def technique_group(variant: Mapping) -> tuple[str, str]:
    """(technique, mlc): the rows of Table 1 (dIMRT, sIMRT, VMAT).

    Parameters
    ----------
    variant : Mapping
        One variant of `technique_variants`.

    Returns
    -------
    tuple of (str, str)
        The technique in lower case and the ``mlc`` value (``""`` when not given).
    """
    return str(variant.get("technique", "")).lower(), str(variant.get("mlc") or "")


def assign_variants(variants: Sequence[Mapping], n: int, *,
                    seed: int | Sequence[int]) -> list[str]:
    """Variant names for ``n`` patients in the variants' ``cases`` proportions.

    Two-level, so that a cohort of Table 1's size reproduces its counts exactly: patients
    are first apportioned to the technique groups (`technique_group`, e.g. dIMRT 27 and
    sIMRT 3 of 30), then within a group to its variants (the even split of "7 ~ 10
    fields"); the order is a permutation drawn from ``seed``.

    Parameters
    ----------
    variants : Sequence of Mapping
        The variants of `technique_variants` (``name``, ``cases``, technique).
    n : int
        Number of patients, >= 0.
    seed : int or Sequence of int
        Seed of numpy's default generator for the order.

    Returns
    -------
    list of str
        The variant name of each of the ``n`` patients.
    """
    groups: dict[tuple[str, str], list[int]] = {}
    for i, v in enumerate(variants):
        groups.setdefault(technique_group(v), []).append(i)
    members = list(groups.values())
    per_group = apportion([sum(float(variants[i]["cases"]) for i in m) for m in members], n)
    counts = [0] * len(variants)
    for m, k in zip(members, per_group, strict=True):
        for i, c in zip(m, apportion([float(variants[i]["cases"]) for i in m], k),
                        strict=True):
            counts[i] = c
    return [str(variants[i]["name"]) for i in _permuted(counts, seed)]


def _share_of_id(key: str) -> float:
    """A uniform number in [0, 1) from a hash of ``key`` (stable across runs and machines)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) / 2.0 ** 64


def technique_for_case(site_cfg: Mapping, institution: Mapping | None, *,
                       patient_id: str, metadata: Mapping | None = None) -> str:
    """The variant name to plan a patient with at ``institution``.

    - the technique stored with the case (metadata ``technique``, written by the cohort)
      when it is one of this institution's;
    - a technique stored by another institution (a cohort patient re-planned elsewhere,
      ``patients_from``): a variant drawn in this institution's proportions from a hash of
      (institution, site, patient id), so the patient always gets the same one;
    - no stored technique (OpenKBP, DICOM, a case of your own): the first variant, the
      institution's default (A's NPC default is the 9 equispaced fields of OpenKBP's
      reference plans).

    Parameters
    ----------
    site_cfg : Mapping
        The site's facts (``conf/site/<name>.yaml``; needs ``name``).
    institution : Mapping or None
        The institution overlay (``conf/institution/<name>.yaml``); None: no overlay.
    patient_id : str
        The patient's id (hashed for a variant drawn here).
    metadata : Mapping, optional
        The case metadata (its ``technique`` entry, if any).

    Returns
    -------
    str
        The variant name.
    """
    variants = technique_variants(site_cfg, institution)
    names = [v["name"] for v in variants]
    stored: Any = (metadata or {}).get(METADATA_KEY)
    inst = (institution or {}).get("name")
    if not isinstance(stored, Mapping) or len(variants) == 1:
        return names[0]
    if stored.get("institution") == inst and stored.get("name") in names:
        return str(stored["name"])
    u = _share_of_id(f"{inst}:{site_cfg['name']}:{patient_id}")
    cum = np.cumsum([float(v["cases"]) for v in variants], dtype=np.float64)
    return names[int(np.searchsorted(cum / cum[-1], u, side="right"))]


def technique_counts(variants: Sequence[Mapping], assigned: Sequence[str]) -> dict[str, int]:
    """How many patients got each variant (every variant listed, in config order).

    Parameters
    ----------
    variants : Sequence of Mapping
        The variants (each with ``name``).
    assigned : Sequence of str
        The variant name of each patient (`assign_variants`).

    Returns
    -------
    dict of str to int
        Patients per variant name (0 for a variant nobody got).
    """
    return {v["name"]: sum(a == v["name"] for a in assigned) for v in variants}
