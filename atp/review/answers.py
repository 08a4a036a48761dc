"""The answer key and answer files: reading and validation (every error names the file).

An answer file is what a packet exports: JSON ``{"format": "blinded-review-answers",
"version": 1, "reviewer", "packet" (the packet hash), "exported", "answers": [{"case",
"acceptable_plan1", "acceptable_plan2", "preferred", "ai_generated", "comment"}, ...]}``
(``"simulated": true`` when `atp.review.simulate` wrote it), or CSV with one row per case
and the columns ``reviewer, packet, case, <the four answers>, comment``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

KEY_FORMAT = "blinded-review-key"
KEY_VERSION = 1
ANSWER_FORMAT = "blinded-review-answers"
ANSWER_VERSION = 1
SCALE = ("agree", "disagree", "cannot_judge")
CHOICE = ("plan1", "plan2", "cannot_judge")
ANSWER_FIELDS = {"acceptable_plan1": SCALE, "acceptable_plan2": SCALE,
                 "preferred": CHOICE, "ai_generated": CHOICE}


class ReviewError(ValueError):
    """Invalid review input (key, answer file, settings); the message names the file."""


@dataclass
class AnswerSet:
    """One reviewer's validated answers: case code -> {field: value, "comment": text}."""

    reviewer: str
    packet: str
    path: Path
    answers: dict[str, dict[str, str]]
    simulated: bool = False
    meta: dict = field(default_factory=dict)


def _read_json(path: Path, what: str) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReviewError(f"{path}: cannot read the {what} ({exc})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReviewError(f"{path}: not a JSON {what} ({exc})") from None
    if not isinstance(doc, dict):
        raise ReviewError(f"{path}: the {what} must be a JSON object")
    return doc


def load_key(path: str | os.PathLike) -> dict:
    """The answer key written by `prepare_review`, checked for the fields the analysis uses.

    Parameters
    ----------
    path : str or os.PathLike
        The key file (``key/key.json`` of a prepared review).

    Returns
    -------
    dict
        The key (``cases``, ``reviewers``, ...); `ReviewError` naming the field if invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise ReviewError(f"{path}: no answer key (run review.py step=prepare first, or set "
                          "review_dir to the prepared review)")
    key = _read_json(path, "answer key")
    if key.get("format") != KEY_FORMAT or key.get("version") != KEY_VERSION:
        raise ReviewError(f"{path}: field 'format'/'version': not a {KEY_FORMAT} version "
                          f"{KEY_VERSION} file")
    cases = key.get("cases")
    if not isinstance(cases, list) or not cases:
        raise ReviewError(f"{path}: field 'cases': missing or empty")
    for i, c in enumerate(cases):
        missing = [k for k in ("code", "new_plan", "site", "institution") if k not in c]
        if missing or c["new_plan"] not in (1, 2):
            raise ReviewError(f"{path}: field 'cases[{i}]': missing {missing} or bad new_plan")
    codes = {c["code"] for c in cases}
    for i, r in enumerate(key.get("reviewers") or []):
        if not {"id", "packet_hash", "order"} <= set(r) or set(r["order"]) != codes:
            raise ReviewError(f"{path}: field 'reviewers[{i}]': needs id, packet_hash and "
                              "an order of every case code")
    if not key.get("reviewers"):
        raise ReviewError(f"{path}: field 'reviewers': missing or empty")
    return key


def _csv_answers(path: Path) -> dict:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReviewError(f"{path}: not a readable CSV answer file ({exc})") from None
    need = {"reviewer", "packet", "case", *ANSWER_FIELDS}
    if not rows or not need <= set(rows[0]):
        raise ReviewError(f"{path}: a CSV answer file needs the columns {sorted(need)}")
    for col in ("reviewer", "packet"):
        values = {r[col] for r in rows}
        if len(values) != 1:
            raise ReviewError(f"{path}: column '{col}' must hold one value, found "
                              f"{sorted(values)}")
    simulated = {str(r.get("simulated", "")).lower() in ("true", "1") for r in rows}
    answers = [{k: r.get(k) or "" for k in ("case", *ANSWER_FIELDS, "comment")} for r in rows]
    return {"format": ANSWER_FORMAT, "version": ANSWER_VERSION, "reviewer": rows[0]["reviewer"],
            "packet": rows[0]["packet"], "answers": answers, "simulated": any(simulated)}


def load_answer_file(path: str | os.PathLike) -> AnswerSet:
    """Read one answer file (``.json`` or ``.csv``) and check its own structure and values.

    It is not yet checked against the key: see `validate_answers`.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.csv`` answer file, or a JSON one (any other suffix).

    Returns
    -------
    AnswerSet
        The reviewer's answers by case code; `ReviewError` naming the file if invalid.
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        doc = _csv_answers(path)
    else:
        doc = _read_json(path, "answer file")
    if doc.get("format") != ANSWER_FORMAT:
        raise ReviewError(f"{path}: field 'format': {doc.get('format')!r} is not "
                          f"{ANSWER_FORMAT!r}")
    if doc.get("version", ANSWER_VERSION) != ANSWER_VERSION:
        raise ReviewError(f"{path}: field 'version': {doc.get('version')!r}, this atp reads "
                          f"{ANSWER_VERSION}")
    reviewer, packet = doc.get("reviewer"), doc.get("packet")
    if not isinstance(reviewer, str) or not reviewer:
        raise ReviewError(f"{path}: field 'reviewer': missing")
    if not isinstance(packet, str) or not packet:
        raise ReviewError(f"{path}: field 'packet': missing (the packet hash)")
    rows = doc.get("answers")
    if not isinstance(rows, list):
        raise ReviewError(f"{path}: field 'answers': expected a list of cases")
    answers: dict[str, dict[str, str]] = {}
    for i, row in enumerate(rows):
        code = str(row.get("case", "")) if isinstance(row, dict) else ""
        if not code:
            raise ReviewError(f"{path}: field 'answers[{i}].case': missing")
        if code in answers:
            raise ReviewError(f"{path}: case {code} answered twice")
        entry = {}
        for name, allowed in ANSWER_FIELDS.items():
            value = row.get(name)
            if value not in allowed:
                raise ReviewError(f"{path}: case {code}, field '{name}': unknown value "
                                  f"{value!r} (allowed: {', '.join(allowed)})")
            entry[name] = value
        comment = row.get("comment", "")
        entry["comment"] = comment if isinstance(comment, str) else str(comment)
        answers[code] = entry
    return AnswerSet(reviewer=reviewer, packet=packet, path=path, answers=answers,
                     simulated=bool(doc.get("simulated", False)),
                     meta={k: doc[k] for k in ("exported", "note") if k in doc})


def validate_answers(sets: Sequence[AnswerSet], key: dict, *, key_path: str = "key"
                     ) -> list[AnswerSet]:
    """Check answer sets against the key; return them in the key's reviewer order.

    Refused, naming the file: an unknown reviewer, a packet hash that is not the
    reviewer's packet, a duplicate reviewer, missing or unknown cases, simulated and real
    answers mixed. No answer set at all is refused too.

    Parameters
    ----------
    sets : sequence of AnswerSet
        The loaded answer files (`load_answer_file`).
    key : dict
        The answer key (`load_key`).
    key_path : str, optional
        How error messages name the key file.

    Returns
    -------
    list of AnswerSet
        The sets in the key's reviewer order (reviewers without answers left out).
    """
    if not sets:
        raise ReviewError("no answer file (.json or .csv) found")
    packets = {r["id"]: r for r in key["reviewers"]}
    codes = [c["code"] for c in key["cases"]]
    by_reviewer: dict[str, AnswerSet] = {}
    for s in sets:
        if s.reviewer not in packets:
            raise ReviewError(f"{s.path}: reviewer {s.reviewer!r} has no packet in {key_path}"
                              f" (reviewers: {sorted(packets)})")
        if s.reviewer in by_reviewer:
            raise ReviewError(f"{s.path}: duplicate reviewer {s.reviewer!r}, also answered in "
                              f"{by_reviewer[s.reviewer].path}; keep one of the two files")
        if s.packet != packets[s.reviewer]["packet_hash"]:
            raise ReviewError(f"{s.path}: packet hash {s.packet[:12]}... is not that of "
                              f"reviewer {s.reviewer}'s packet in {key_path} "
                              "(answers for another packet or an earlier preparation)")
        missing = [c for c in codes if c not in s.answers]
        if missing:
            raise ReviewError(f"{s.path}: missing cases {missing}")
        unknown = sorted(set(s.answers) - set(codes))
        if unknown:
            raise ReviewError(f"{s.path}: unknown cases {unknown}")
        by_reviewer[s.reviewer] = s
    if len({s.simulated for s in sets}) > 1:
        sim = [str(s.path) for s in sets if s.simulated]
        raise ReviewError(f"simulated answer files mixed with real ones: {sim}")
    return [by_reviewer[r] for r in packets if r in by_reviewer]
