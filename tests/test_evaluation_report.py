"""Figures and the HTML report of atp.evaluation (small synthetic inputs)."""

from __future__ import annotations

import base64
import math

import numpy as np
import pytest

from atp.evaluation import write_html_report
from atp.evaluation.html import DISCLAIMER, format_cell
from atp.viz import (
    dose_difference_slices,
    dot_plot_relative_differences,
    dot_plot_vs_prediction,
    save_figure,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _summary():
    rows = []
    for inst, flags in (("A", ("better", "worse", "n.s.")), ("B", ("n.s.", "better", "n.s."))):
        for metric, flag, x in zip(("D95%(ptv)", "Dmean(parotid_l)", "MU"), flags,
                                   (1.5, -4.0, 0.3), strict=True):
            rows.append({"site": "HN", "institution": inst, "metric": metric, "new": "ATP",
                         "mean_rel_diff_pct": x, "ci_lo_pct": x - 1.0, "ci_hi_pct": x + 1.0,
                         "p": 0.01, "flag": flag, "n": 4})
    rows.append({"site": "HN", "institution": "C", "metric": "MU", "new": "ATP",
                 "mean_rel_diff_pct": 2.0, "ci_lo_pct": math.nan, "ci_hi_pct": math.nan,
                 "p": math.nan, "flag": "n.s.", "n": 1})
    return rows


def test_dot_plots_produce_png(tmp_path):
    fig = dot_plot_relative_differences(_summary(), title="HN: ATP vs MNL")
    save_figure(fig, tmp_path / "fig4.png")
    assert (tmp_path / "fig4.png").read_bytes()[:8] == PNG_MAGIC
    pred = [{"site": "HN", "institution": i, "metric": "Dmean(parotid_l)", "plan": "ATP",
             "mean_rel_diff_pct": x, "ci_lo_pct": x - 2, "ci_hi_pct": x + 2}
            for i, x in (("A", -3.0), ("B", 4.0))]
    fig = dot_plot_vs_prediction(pred, title="HN: ATP vs prediction")
    save_figure(fig, tmp_path / "fig5.png")
    assert (tmp_path / "fig5.png").read_bytes()[:8] == PNG_MAGIC


def test_dose_difference_slices_png(tmp_path):
    shape = (12, 20, 24)
    z, y, x = np.indices(shape)
    ct = np.where((y - 10) ** 2 + (x - 12) ** 2 < 80, 0.0, -1000.0)
    ptv = (z - 6) ** 2 + (y - 10) ** 2 + (x - 12) ** 2 < 12
    organ = (abs(z - 6) < 3) & (abs(y - 10) < 2) & (abs(x - 17) < 2)
    dose_a = 70.0 * np.exp(-((z - 6) ** 2 + (y - 10) ** 2 + (x - 12) ** 2) / 30.0)
    dose_b = dose_a * 1.05
    fig = dose_difference_slices(ct, dose_a, dose_b, {"ptv_7000": ptv, "parotid_l": organ},
                                 spacing_mm=(3.0, 2.0, 2.0), title="case 1")
    assert len(fig.axes) >= 6
    save_figure(fig, tmp_path / "fig2.png")
    assert (tmp_path / "fig2.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError):
        dose_difference_slices(ct, dose_a[:-1], dose_b, {}, spacing_mm=(3, 2, 2))


def test_format_cell():
    assert format_cell(3.14159) == "3.14"
    assert format_cell(0.000123456) == "0.000123"
    assert format_cell(12345.0) == "1.23e+04"
    assert format_cell(7) == "7"
    assert format_cell(math.nan) == ""
    assert format_cell(True) == "yes"


def test_html_report_single_file(tmp_path):
    fig = dot_plot_relative_differences(_summary(), title="t")
    png = tmp_path / "fig4.png"
    save_figure(fig, png)
    out = tmp_path / "report" / "report.html"
    write_html_report(out, title="Study <replication>", sections=[
        {"heading": "Head & neck", "text": "Para one.\n\nPara <two>.",
         "tables": [("Summary <b>bold</b>", _summary())],
         "figures": [("Figure <b>4</b>", png)]},
        {"heading": "Empty section"},
    ])
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]
    text = out.read_text(encoding="utf-8")
    assert "data:image/png;base64," + base64.b64encode(png.read_bytes()).decode() in text
    assert "Figure &lt;b&gt;4&lt;/b&gt;" in text and "<b>4</b>" not in text
    assert "Summary &lt;b&gt;bold&lt;/b&gt;" in text
    assert "Study &lt;replication&gt;" in text and "Head &amp; neck" in text
    assert "<p>Para &lt;two&gt;.</p>" in text
    assert text.count("<table>") == 1
    assert "<th>mean_rel_diff_pct</th>" in text
    assert '<td class="better">better</td>' in text
    assert '<td class="worse">worse</td>' in text
    assert '<td class="ns">n.s.</td>' in text
    assert ">-4<" in text and ">0.01<" in text
    assert DISCLAIMER in text
    assert "not a statement of clinical acceptability" in text
    assert "src=\"http" not in text and "<link" not in text


def test_tuning_score_by_hand():
    from atp.evaluation.report import tuning_score

    def rows(atp_target_met: int) -> list[dict]:
        base = {"site": "lung", "institution": "A"}
        return [{**base, "plan": "ATP", "goals_met": 8, "goals_total": 10,
                 "target_goals_met": atp_target_met, "target_goals_total": 2},
                {**base, "plan": "ATP", "goals_met": 9, "goals_total": 10,
                 "target_goals_met": 2, "target_goals_total": 2},
                {**base, "plan": "MNL", "goals_met": 9, "goals_total": 10,
                 "target_goals_met": 2, "target_goals_total": 2},
                {**base, "plan": "MNL", "goals_met": 9, "goals_total": 10,
                 "target_goals_met": 2, "target_goals_total": 2}]

    comparison = [{"kind": "organ", "mean_rel_diff_pct": 10.0},
                  {"kind": "organ", "mean_rel_diff_pct": 30.0},
                  {"kind": "target", "mean_rel_diff_pct": -50.0}]  # not a tie-breaker
    # pass rate (0.8 + 0.9) / 2 = 0.85; organ gain 20 % -> 0.5 / 20 goals * 0.2 = 0.005
    kept = tuning_score(rows(2), comparison, reference="MNL")
    assert kept["atp_criteria_pass_rate"] == pytest.approx(0.85)
    assert kept["tuning_score"] == pytest.approx(0.855)
    # ATP meets 3 of 4 target goals where MNL meets 4 of 4: one lower
    lost = tuning_score(rows(1), comparison, reference="MNL")
    assert lost["tuning_score"] == pytest.approx(0.855 - 1.0)
    assert tuning_score([], comparison) == {}
