"""Keyword frequencies of reviewers' comments (the study's Supplementary Fig. 3 counted
the keywords of the comments; we count words, stop words left out)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

STOP_WORDS = frozenset("""
a about above after again all also am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from
further had has have having he her here hers him his how i if in into is it its itself
just me more most my no nor not of off on once only or other our out over own same she
should so some such than that the their them then there these they this those through to
too under until up very was we were what when where which while who whom why will with
would you your plan plans one two
""".split())
_WORD = re.compile(r"[a-z][a-z0-9]*(?:[-'][a-z0-9]+)*")


def words(text: str, *, min_length: int = 3) -> list[str]:
    """Lower-case words of ``text`` (hyphenated words kept whole), stop words removed.

    Parameters
    ----------
    text : str
        A comment.
    min_length : int, optional
        Shortest word kept (characters); default 3.

    Returns
    -------
    list of str
        The words in order, repeats kept.
    """
    return [w for w in _WORD.findall(text.lower())
            if len(w) >= min_length and w not in STOP_WORDS]


def keyword_table(rows: Iterable[Mapping], *, min_length: int = 3, top: int | None = None
                  ) -> list[dict]:
    """Per word: mentions, comments mentioning it, and how many of those comments came
    with a preference for the new plan (``preferred`` true) or not.

    ``rows`` are `atp.review.scoring.score_answers` rows (``comment``, ``preferred``).
    Sorted by mentions, then alphabetically; the first ``top`` rows if given.

    Parameters
    ----------
    rows : iterable of mapping
        Scored answer rows (``comment``, ``preferred``).
    min_length : int, optional
        Shortest word counted (characters); default 3.
    top : int, optional
        Keep the first ``top`` rows; None keeps all.

    Returns
    -------
    list of dict
        ``keyword, mentions, comments, share_of_comments, with_new_preferred,
        with_new_not_preferred``.
    """
    stats: dict[str, dict] = {}
    n_comments = 0
    for r in rows:
        found = words(str(r.get("comment") or ""), min_length=min_length)
        if not found:
            continue
        n_comments += 1
        for w in found:
            stats.setdefault(w, {"mentions": 0, "comments": set()})["mentions"] += 1
            stats[w]["comments"].add(id(r))
        for w in set(found):
            key = "with_new_preferred" if r.get("preferred") else "with_new_not_preferred"
            stats[w][key] = stats[w].get(key, 0) + 1
    out = [{"keyword": w, "mentions": s["mentions"], "comments": len(s["comments"]),
            "share_of_comments": len(s["comments"]) / n_comments,
            "with_new_preferred": s.get("with_new_preferred", 0),
            "with_new_not_preferred": s.get("with_new_not_preferred", 0)}
           for w, s in stats.items()]
    out.sort(key=lambda r: (-r["mentions"], r["keyword"]))
    return out[:top] if top else out
