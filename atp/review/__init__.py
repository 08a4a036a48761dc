"""Blinded physician review of ATP vs comparator plans (the study's Fig. 3 statistics).

Three steps (``review.py step=...``):

1. `prepare_review`: blinded pairs ("Plan 1" / "Plan 2" in a seeded, balanced order),
   one self-contained HTML packet per reviewer (own random case order, questionnaire,
   answers kept in the browser, JSON/CSV export) and a separate answer key;
2. the reviewers answer in their browser (or `simulate_answers` stands in for them);
3. `analyze_review`: validated answers -> acceptance, preference and AI-recognition by
   number of agreeing reviewers, Fleiss' kappa, the dosimetric comparison split by
   unanimous preference, comment keywords, figures and an HTML report.

Pure python/numpy/matplotlib (domain layer: no torch, no Hydra).
"""

from atp.review.analysis import analyze_review
from atp.review.answers import ReviewError, load_answer_file, load_key
from atp.review.prepare import prepare_review
from atp.review.scoring import fleiss_kappa, score_answers
from atp.review.simulate import simulate_answers

__all__ = [
    "ReviewError",
    "analyze_review",
    "fleiss_kappa",
    "load_answer_file",
    "load_key",
    "prepare_review",
    "score_answers",
    "simulate_answers",
]
