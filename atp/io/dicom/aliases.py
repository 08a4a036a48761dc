"""ROI names from planning systems -> `atp` canonical names (see ``shared/DESIGN.md``).

Resolution order for a name:

1. an explicit alias table (the ``aliases:`` mapping of a site config), compared after
   normalisation (lower case, separators and spaces removed);
2. names that already are canonical (``parotid_l``, ``ptv_7000``, ``ring_0_10``, ...);
3. targets: ``PTV`` followed by a dose, ``PTV70``, ``PTV_7000``, ``PTV 70Gy``,
   ``PTV_70.0``, ``PTV 5040cGy`` (numbers >= 100 without a unit are cGy) -> ``ptv_7000``;
4. rules: the name is split into words (spaces, ``_``, ``-``, ``.``, camel case), a
   leading or trailing side word (``L``, ``Lt``, ``Left``, ``R``, ``Rt``, ``Right``) is
   taken off and the rest is looked up in a synonym table (``Cord`` -> ``spinal_cord``,
   ``Femur_Head`` -> ``femoral_head``, ``SmallBowel`` -> ``bowel_small`` ...).

Anything else resolves to ``None``: the importer keeps the name as it is and reports it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from atp.names import BODY, SITE_ORGANS, SITES, ptv_name

#: Normalised synonym (no separators, lower case) -> canonical base name.
SYNONYMS: dict[str, str] = {
    # external
    "body": BODY, "external": BODY, "skin": BODY, "outline": BODY, "ext": BODY,
    "bodyoutline": BODY, "externalcontour": BODY, "patientoutline": BODY,
    # head and neck
    "brainstem": "brainstem", "brainstm": "brainstem",
    "spinalcord": "spinal_cord", "cord": "spinal_cord", "cordspinal": "spinal_cord",
    "medullaspinalis": "spinal_cord",
    "parotid": "parotid", "parotidgland": "parotid", "glandparotid": "parotid",
    "tmj": "tmj", "temporomandibularjoint": "tmj", "jointtm": "tmj", "tmjoint": "tmj",
    "oralcavity": "oral_cavity", "cavityoral": "oral_cavity", "oral": "oral_cavity",
    "mouth": "oral_cavity",
    "mandible": "mandible", "mandibula": "mandible", "bonemandible": "mandible",
    "larynx": "larynx",
    "esophagus": "esophagus", "oesophagus": "esophagus", "esoph": "esophagus",
    "opticnerve": "optic_nerve", "opticnrv": "optic_nerve", "nerveoptic": "optic_nerve",
    "opticn": "optic_nerve", "on": "optic_nerve",
    "chiasm": "chiasm", "opticchiasm": "chiasm", "chiasma": "chiasm", "chiasmoptic": "chiasm",
    "lens": "lens", "eyelens": "lens",
    # thorax
    "lung": "lung", "heart": "heart", "breast": "breast",
    "humeralhead": "humeral_head", "humerushead": "humeral_head", "humerus": "humeral_head",
    "headhumerus": "humeral_head", "headhumeral": "humeral_head",
    # pelvis
    "bladder": "bladder", "urinarybladder": "bladder",
    "rectum": "rectum",
    "smallbowel": "bowel_small", "bowelsmall": "bowel_small", "smallintestine": "bowel_small",
    "colon": "colon", "largebowel": "colon", "bowellarge": "colon", "sigmoid": "colon",
    "sigmoidcolon": "colon", "colonsigmoid": "colon",
    "femoralhead": "femoral_head", "femurhead": "femoral_head", "headfemur": "femoral_head",
    "femoralheadneck": "femoral_head", "femur": "femoral_head",
}

#: Bases that exist only with a side, and those that never take one.
LATERAL = frozenset({"parotid", "tmj", "optic_nerve", "lens", "lung", "breast",
                     "humeral_head", "femoral_head"})
_SIDE_WORDS = {"l": "l", "lt": "l", "left": "l", "lft": "l", "r": "r", "rt": "r",
               "right": "r", "rgt": "r"}
_SIDE_PREFIXES = (("left", "l"), ("lt", "l"), ("l", "l"), ("right", "r"), ("rt", "r"),
                  ("r", "r"))

_PTV_RE = re.compile(r"^ptv[\s_\-.]*(\d+(?:[.,]\d+)?)[\s_\-]*(c?gy)?$")
_PTV_WORD_RE = re.compile(r"^ptv(?![a-z])")
_CANONICAL_RE = re.compile(r"^(ptv_\d+|ring_\d+_\d+|patch_[a-z0-9_]+)$")
_CAMEL_RE = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")

_ALL_CANONICAL = frozenset({BODY, *(o for organs in SITE_ORGANS.values() for o in organs)})


def normalise(name: str) -> str:
    """Lower case with spaces and separators removed (the key of the alias tables).

    Parameters
    ----------
    name : str
        ROI name.

    Returns
    -------
    str
        Lower-case name without whitespace, ``_``, ``-`` or ``.``.
    """
    return re.sub(r"[\s_\-.]+", "", str(name)).lower()


def words(name: str) -> list[str]:
    """Lower-case words of a name: split on separators, camel case and letter/digit joins.

    Parameters
    ----------
    name : str
        ROI name.

    Returns
    -------
    list of str
        Lower-case words, in order.
    """
    parts = re.split(r"[\s_\-.()/]+", str(name).strip())
    out: list[str] = []
    for part in parts:
        out += [w.lower() for w in _CAMEL_RE.split(part) if w]
    return out


def ptv_dose_from_name(name: str) -> float | None:
    """Dose (Gy) encoded in a PTV name, or None.

    ``PTV70``, ``PTV 70Gy``, ``PTV_70.0`` -> 70.0; ``PTV_7000``, ``PTV 7000cGy`` -> 70.0;
    ``PTV50.4`` -> 50.4. Derived names (``PTV70_opt``, ``PTV70-3mm``) do not match.

    Parameters
    ----------
    name : str
        ROI name.

    Returns
    -------
    float or None
        Dose (Gy); None when ``name`` is not a PTV name with a positive dose.
    """
    m = _PTV_RE.match(str(name).strip().lower())
    if not m:
        return None
    value = float(m.group(1).replace(",", "."))
    unit = m.group(2)
    if unit == "cgy" or (unit is None and value >= 100 and "." not in m.group(1)
                         and "," not in m.group(1)):
        value /= 100.0
    return value if value > 0 else None


def looks_like_target(name: str) -> bool:
    """True for names starting with the word PTV (``PTV``, ``PTV_boost``, ``ptv high``).

    Parameters
    ----------
    name : str
        ROI name.

    Returns
    -------
    bool
        Whether the name looks like a target.
    """
    return bool(_PTV_WORD_RE.match(str(name).strip().lower()))


def _organ(name: str) -> str | None:
    ws = words(name)
    side = None
    if len(ws) > 1 and ws[-1] in _SIDE_WORDS:
        side, ws = _SIDE_WORDS[ws[-1]], ws[:-1]
    elif len(ws) > 1 and ws[0] in _SIDE_WORDS:
        side, ws = _SIDE_WORDS[ws[0]], ws[1:]
    key = "".join(ws)
    base = SYNONYMS.get(key)
    if base is None and side is None:
        # glued sides: "LParotid" in capitals, "parotidl", "ParotidLt"
        for prefix, s in _SIDE_PREFIXES:
            if key.startswith(prefix) and SYNONYMS.get(key[len(prefix):]) in LATERAL:
                base, side = SYNONYMS[key[len(prefix):]], s
                break
            if key.endswith(prefix) and SYNONYMS.get(key[:-len(prefix)]) in LATERAL:
                base, side = SYNONYMS[key[:-len(prefix)]], s
                break
    if base is None:
        return None
    if base in LATERAL:
        return f"{base}_{side}" if side else None
    return None if side else base


def resolve_roi_name(name: str, *, site: str | None,
                     extra_aliases: Mapping[str, str] | None = None) -> str | None:
    """Canonical name for an ROI name from a planning system, or None when unknown.

    ``site`` (one of ``atp.names.SITES`` or None) is accepted for site-specific explicit
    tables; the built-in rules are the same for every site (an organ of another site,
    such as ``heart`` in an NPC case, still resolves to its canonical name).

    Parameters
    ----------
    name : str
        ROI name as in the RT structure set.
    site : str or None
        Site of the case, or None; checked against ``atp.names.SITES``.
    extra_aliases : mapping of str to str, optional
        Explicit alias -> canonical table, tried first (keys compared via `normalise`).

    Returns
    -------
    str or None
        Canonical ROI name; None when the name is not recognised.
    """
    if site is not None and site not in SITES:
        raise ValueError(f"unknown site {site!r} (known: {list(SITES)})")
    raw = str(name).strip()
    if extra_aliases:
        table = {normalise(k): str(v) for k, v in extra_aliases.items()}
        hit = table.get(normalise(raw), "").strip()
        if hit:
            return hit
    low = raw.lower()
    if low in _ALL_CANONICAL or _CANONICAL_RE.match(low):
        return low
    dose = ptv_dose_from_name(raw)
    if dose is not None:
        return ptv_name(dose)
    return _organ(raw)


def role_of(canonical: str) -> str:
    """ROI role of a canonical name: external, target, control (rings, patches) or organ.

    Parameters
    ----------
    canonical : str
        Canonical ROI name.

    Returns
    -------
    str
        One of ``atp.names.ROI_ROLES``.
    """
    if canonical == BODY:
        return "external"
    if canonical.startswith("ptv_"):
        return "target"
    if canonical.startswith(("ring_", "patch_")):
        return "control"
    return "organ"


def aliases_from_config(site_cfg: Mapping[str, Any] | None) -> dict[str, str]:
    """The explicit alias table of a site config: ``aliases: {alias: canonical}``.

    The inverse form ``aliases: {canonical: [alias, ...]}`` is accepted too.

    Parameters
    ----------
    site_cfg : mapping, optional
        Site configuration; None or empty gives an empty table.

    Returns
    -------
    dict of str to str
        Alias -> canonical name.
    """
    if not site_cfg:
        return {}
    table = site_cfg.get("aliases") or {}
    if not isinstance(table, Mapping):
        raise ValueError(f"site config 'aliases' must be a mapping, got {type(table).__name__}")
    out: dict[str, str] = {}
    for key, value in table.items():
        if isinstance(value, str):
            out[str(key)] = value
        elif isinstance(value, list | tuple):
            for alias in value:
                out[str(alias)] = str(key)
        else:
            raise ValueError(f"site config 'aliases.{key}' must be a name or a list of names, "
                             f"got {value!r}")
    return out
