"""What is drawn from the review's seed, and the check that a packet reveals no source.

Everything random in a review comes from one recorded integer ``seed``, through
``numpy.random.default_rng([seed, stream, ...])`` with a fixed stream number per use:

- stream 0: the case codes (random numbers, the same for every reviewer);
- stream 1: which plan is "Plan 1" per case, balanced within every (site, institution)
  group and overall (the counts differ by at most one);
- stream 2, reviewer index i: that reviewer's case order (redrawn while it repeats an
  earlier reviewer's order, as long as enough orders exist).

Cases enter sorted (see `atp.review.sources.find_cases`), so the draws depend only on the
seed and the set of cases.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence

import numpy as np

_DATA_URI = re.compile(r"data:[a-z]+/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=]+")


class BlindingError(ValueError):
    """A packet would reveal where a plan comes from."""


def case_codes(n: int, *, seed: int) -> list[str]:
    """``n`` distinct random case codes (digits; at least 3, one more than ``n`` has).

    Parameters
    ----------
    n : int
        Number of cases.
    seed : int
        The review's seed (stream 0).

    Returns
    -------
    list of str
        ``n`` distinct codes of equal width, no leading zero.
    """
    width = max(3, len(str(n)) + 1)
    rng = np.random.default_rng([seed, 0])
    low = 10 ** (width - 1)
    draws = rng.choice(10 ** width - low, size=n, replace=False) + low
    return [str(int(d)) for d in draws]


def new_plan_first(groups: Sequence[object], *, seed: int) -> list[bool]:
    """Per case, whether the new (ATP) plan is shown as Plan 1.

    ``groups`` holds one stratum key per case (e.g. (site, institution)). Within each
    stratum half of the cases (rounded down) show the new plan first and as many show it
    second; the odd case out of every odd-sized stratum is then balanced the same way
    over the strata, the last odd one by a coin flip. Deterministic in ``seed``.

    Parameters
    ----------
    groups : sequence
        One stratum key per case.
    seed : int
        The review's seed (stream 1).

    Returns
    -------
    list of bool
        Per case, True when the new plan is Plan 1.
    """
    rng = np.random.default_rng([seed, 1])
    first = [False] * len(groups)
    strata: dict[object, list[int]] = {}
    for i, g in enumerate(groups):
        strata.setdefault(g, []).append(i)
    leftovers: list[int] = []
    for key in sorted(strata, key=repr):
        idx = [int(i) for i in rng.permutation(strata[key])]
        half = len(idx) // 2
        for i in idx[:half]:
            first[i] = True
        if len(idx) % 2:
            leftovers.append(idx[-1])
    if leftovers:
        idx = [int(i) for i in rng.permutation(leftovers)]
        half = len(idx) // 2
        for i in idx[:half]:
            first[i] = True
        if len(idx) % 2:
            first[idx[-1]] = bool(rng.random() < 0.5)
    return first


def reviewer_orders(n_cases: int, n_reviewers: int, *, seed: int) -> list[list[int]]:
    """Each reviewer's case order (indices); orders differ while enough of them exist.

    Parameters
    ----------
    n_cases : int
        Number of cases.
    n_reviewers : int
        Number of reviewers.
    seed : int
        The review's seed (stream 2, one sub-stream per reviewer).

    Returns
    -------
    list of list of int
        Per reviewer, a permutation of ``range(n_cases)``.
    """
    orders: list[list[int]] = []
    for r in range(n_reviewers):
        rng = np.random.default_rng([seed, 2, r])
        order = [int(i) for i in rng.permutation(n_cases)]
        distinct_possible = math.factorial(min(n_cases, 12)) > len(orders)
        while distinct_possible and order in orders:
            order = [int(i) for i in rng.permutation(n_cases)]
        orders.append(order)
    return orders


def visible_text(html_text: str) -> str:
    """The packet's text with embedded data URIs (base64 images) removed.

    Parameters
    ----------
    html_text : str
        The packet's HTML.

    Returns
    -------
    str
        The HTML with each data URI cut to ``data:``.
    """
    return _DATA_URI.sub("data:", html_text)


def find_revealing(text: str, *, terms: Iterable[str] = (), tokens: Iterable[str] = ()
                   ) -> list[str]:
    """Which of ``terms`` (case-insensitive substrings) and ``tokens`` (case-insensitive
    whole words, letters/digits/_ around them not allowed) occur in ``text``.

    Parameters
    ----------
    text : str
        The text searched.
    terms : iterable of str, optional
        Substrings searched for (case-insensitive).
    tokens : iterable of str, optional
        Whole words searched for (case-insensitive).

    Returns
    -------
    list of str
        The terms, then the tokens, found (each once, empty strings ignored).
    """
    low = text.lower()
    found = [t for t in dict.fromkeys(terms) if t and t.lower() in low]
    for tok in dict.fromkeys(tokens):
        if tok and re.search(rf"(?<![A-Za-z0-9_]){re.escape(tok.lower())}(?![A-Za-z0-9_])",
                             low):
            found.append(tok)
    return found


def checkable_token(value: str) -> bool:
    """Identifiers worth searching for: 3+ characters with a letter (not a bare number,
    which dose values would match).

    Parameters
    ----------
    value : str
        A candidate identifier (ROI name, patient id, ...).

    Returns
    -------
    bool
        True when ``value`` is worth searching for.
    """
    return len(value) >= 3 and any(c.isalpha() for c in value)


def check_blinded(html_text: str, *, where: str, terms: Iterable[str],
                  tokens: Iterable[str]) -> None:
    """Raise `BlindingError` when the visible text of a packet holds a revealing string.

    Parameters
    ----------
    html_text : str
        The packet's HTML (embedded images are not searched).
    where : str
        How the error names the packet.
    terms : iterable of str
        Forbidden substrings (case-insensitive).
    tokens : iterable of str
        Forbidden whole words (case-insensitive).
    """
    found = find_revealing(visible_text(html_text), terms=terms, tokens=tokens)
    if found:
        raise BlindingError(f"{where}: the packet would show {found!r}, which could reveal "
                            "a plan's source; rename the ROI/question text or set "
                            "review.forbidden_terms")
