"""Blinded review: packets that hide the source, a seeded balanced order, answer-file
validation with nothing half-written, the analysis, and a real browser session."""

from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import time

import numpy as np
import pytest
from review_helpers import write_multirun, write_run

from atp.evaluation.plan_store import load_case_plans, save_case_plans
from atp.review import analyze_review, blinding, images, load_key, prepare_review
from atp.review.analysis import evaluation_reports_of
from atp.review.answers import ReviewError
from atp.review.packet import packet_hash_of
from atp.review.simulate import simulate_answers
from atp.review.sources import SourceError, find_cases
from atp.viz.review import pair_dose_wash, pair_dvh

FORBIDDEN = ("ATP", "MNL", "clinical", "auto", "prediction")
SEED = 11
_DATA_URI = re.compile(r"data:image/png;base64,([A-Za-z0-9+/=]+)")


@pytest.fixture(scope="module")
def review(tmp_path_factory):
    """A multirun (lung at A and C, comparator MNL) plus a single breast run at B whose
    comparator is labelled "clinical"; evaluation reports beside them."""
    root = tmp_path_factory.mktemp("review")
    sweep = write_multirun(root / "sweep", jobs=[("lung", "A", 2), ("lung", "C", 1)])
    (sweep / "summary").mkdir()
    (sweep / "summary" / "report.html").write_text("<html><body><h1>eval</h1></body></html>")
    single = write_run(root / "eval_breast_B", site="breast", institution="B", n=1,
                       comparator="clinical", seed0=5)
    (single / "report.html").write_text("<html><body><h1>eval B</h1></body></html>")
    out = prepare_review([sweep, single], root / "rv", reviewers=["R1", "R2", "R3"],
                         seed=SEED, dpi=50, progress=False)
    return {"root": root, "runs": [sweep, single], "out": out, "dir": root / "rv",
            "key": load_key(root / "rv" / "key" / "key.json")}


def _pngs(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in _DATA_URI.findall(text)]


def test_packets_hide_the_source(review):
    key = review["key"]
    ids = [c["patient_id"] for c in key["cases"]]
    files = [p.name for run in review["runs"] for p in run.rglob("*.npz")]
    runs = ["0_lung_A", "1_lung_C", "eval_breast_B", "sweep"]
    assert len(review["out"]["packets"]) == 3
    for packet in review["out"]["packets"]:
        text = packet.read_text()
        visible = blinding.visible_text(text).lower()
        for term in (*FORBIDDEN, *ids, *files, *(f.removesuffix(".npz") for f in files),
                     *runs):
            assert term.lower() not in visible, (packet.name, term)
        # identifiers with characters outside base64 cannot hide in the images' data
        for term in (*ids, *files, *runs[:3]):
            assert term not in text
        pngs = _pngs(text)
        assert len(pngs) == 2 * len(key["cases"])  # DVH and dose wash per case
        for png in pngs:
            assert images.png_text_chunks(png) == []  # no metadata that could name a plan
        assert '"new_plan"' not in text and "comparator" not in text.lower()


def test_figures_name_plans_by_number_only(review):
    plans = load_case_plans(review["key"]["cases"][0]["source"])
    doses = [plans.doses_gy["ATP"], plans.doses_gy[plans.comparator]]
    for fig in (pair_dvh(plans.case, doses, title="Case 1: DVH"),
                pair_dose_wash(plans.case, doses, title="Case 1: dose")):
        texts = images.figure_strings(fig)
        joined = " ".join(texts).lower()
        assert "plan 1" in joined and "plan 2" in joined
        for term in (*FORBIDDEN, plans.case.patient_id):
            assert term.lower() not in joined, term
        images.png_bytes(fig)  # closes it


def test_packets_are_self_contained(review):
    for packet in review["out"]["packets"]:
        text = blinding.visible_text(packet.read_text())
        assert "http://" not in text and "https://" not in text and "<link" not in text
        assert re.findall(r'src="(?!data:)', text) == []
        assert "<script src" not in text
        assert packet_hash_of(packet, _claimed(packet)) == _claimed(packet)


def _claimed(packet) -> str:
    data = re.search(r'<script id="packet-data" type="application/json">(.*?)</script>',
                     packet.read_text(), flags=re.S).group(1)
    return json.loads(data)["packet"]


def test_plan_order_is_balanced_and_depends_only_on_the_seed(review):
    key = review["key"]
    cases = key["cases"]
    groups = [(c["site"], c["institution"]) for c in cases]
    # cases are listed in their canonical order, so the seed alone fixes the draws
    assert [c["new_plan"] == 1 for c in cases] == blinding.new_plan_first(groups, seed=SEED)
    assert [c["code"] for c in cases] == blinding.case_codes(len(cases), seed=SEED)
    first = sum(c["new_plan"] == 1 for c in cases)
    assert abs(first - (len(cases) - first)) <= 1
    for g in set(groups):
        n1 = sum(c["new_plan"] == 1 for c in cases if (c["site"], c["institution"]) == g)
        n = groups.count(g)
        assert abs(n1 - (n - n1)) <= 1, g
    for c in cases:  # the key records each plan's real comparator label
        assert c["comparator"] == ("clinical" if c["site"] == "breast" else "MNL")
    # balance over many strata and seeds; other seeds give other assignments
    many = [("s", i % 7) for i in range(61)]
    draws = {tuple(blinding.new_plan_first(many, seed=s)) for s in range(5)}
    assert len(draws) == 5
    for d in draws:
        assert abs(2 * sum(d) - len(many)) <= 1
        for k in range(7):
            sub = [x for x, g in zip(d, many, strict=True) if g[1] == k]
            assert abs(2 * sum(sub) - len(sub)) <= 1
    assert blinding.new_plan_first(many, seed=3) == blinding.new_plan_first(many, seed=3)


def test_reviewers_get_their_own_case_order(review):
    key = review["key"]
    orders = [r["order"] for r in key["reviewers"]]
    assert len({tuple(o) for o in orders}) == 3
    codes = [c["code"] for c in key["cases"]]
    expect = blinding.reviewer_orders(len(codes), 3, seed=SEED)
    assert orders == [[codes[i] for i in o] for o in expect]
    for r in key["reviewers"]:  # each packet shows its cases in the recorded order
        text = (review["dir"] / r["packet"]).read_text()
        shown = re.findall(r'<section class="case" id="case-(\d+)">', text)
        assert shown == r["order"]
    assert len({tuple(o) for o in blinding.reviewer_orders(3, 6, seed=0)}) == 6  # 3! = 6


def test_prepare_refuses_a_prepared_folder_and_bad_reviewers(review, tmp_path):
    with pytest.raises(ReviewError, match="already holds a prepared review"):
        prepare_review(review["runs"], review["dir"], reviewers=["R1"], seed=1)
    with pytest.raises(ReviewError, match="duplicate"):
        prepare_review(review["runs"], tmp_path, reviewers=["R1", "R1"], seed=1)
    with pytest.raises(ReviewError, match="reviewer ID"):
        prepare_review(review["runs"], tmp_path, reviewers=["a/b"], seed=1)


def test_find_cases_errors_name_the_folder_or_file(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="empty.*no plans/"):
        find_cases([tmp_path / "empty"])
    src = write_run(tmp_path / "run", n=1)
    plans = load_case_plans(next((src / "plans").glob("*.npz")))
    save_case_plans(src / "plans" / "other.npz", case=plans.case,
                    doses_gy={"auto": plans.doses_gy["ATP"], "MNL": plans.doses_gy["MNL"]},
                    comparator="MNL")
    with pytest.raises(SourceError, match=r"other\.npz.*no 'ATP' plan"):
        find_cases([src])


def test_blinding_guard_stops_prepare_with_nothing_written(tmp_path):
    run = write_run(tmp_path / "run", n=1)
    with pytest.raises(blinding.BlindingError, match="ptv"):
        prepare_review([run], tmp_path / "rv", reviewers=["R1"], seed=0,
                       forbidden_terms=["ptv"], progress=False)
    assert not (tmp_path / "rv").exists() or list((tmp_path / "rv").iterdir()) == []
    assert blinding.find_revealing("Plan 1 of patient lung_A_pat000",
                                   tokens=["lung_A_pat000", "pat"]) == ["lung_A_pat000"]


def _sim_files(review, folder, *, seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    docs = simulate_answers(review["key"], seed=seed)
    paths = []
    for d in docs:
        paths.append(folder / f"answers_{d['reviewer']}.json")
        paths[-1].write_text(json.dumps(d))
    return docs, paths


BAD = {
    "hash": (lambda d: {**d, "packet": "0" * 64}, "packet hash"),
    "missing": (lambda d: {**d, "answers": d["answers"][1:]}, "missing cases"),
    "unknown case": (lambda d: {**d, "answers": [*d["answers"], {**d["answers"][0],
                                                                 "case": "99999"}]},
                     "unknown cases"),
    "value": (lambda d: {**d, "answers": [{**d["answers"][0], "preferred": "maybe"},
                                          *d["answers"][1:]]}, "unknown value 'maybe'"),
    "reviewer": (lambda d: {**d, "reviewer": "R9"}, "has no packet"),
}


@pytest.mark.parametrize("kind", [*BAD, "duplicate", "not json"])
def test_bad_answer_files_are_refused_leaving_no_output(review, tmp_path, kind):
    docs, paths = _sim_files(review, tmp_path / "answers")
    bad = paths[1]
    if kind in BAD:
        bad.write_text(json.dumps(BAD[kind][0](docs[1])))
        message = BAD[kind][1]
    elif kind == "duplicate":
        bad = tmp_path / "answers" / "answers_R1 (1).json"
        shutil.copy(paths[0], bad)
        message = "duplicate reviewer 'R1'"
    else:
        bad.write_text("{not json")
        message = "not a JSON answer file"
    out = tmp_path / "analysis"
    with pytest.raises(ReviewError) as err:
        analyze_review(review["dir"] / "key" / "key.json", tmp_path / "answers", out)
    assert message in str(err.value) and bad.name in str(err.value)
    assert not out.exists() and not list(tmp_path.glob(".analysis*"))


def test_analysis_of_simulated_answers(review, tmp_path):
    docs, paths = _sim_files(review, tmp_path / "answers", seed=4)
    with open(paths[2].with_suffix(".csv"), "w", newline="") as fh:  # one reviewer as CSV
        cols = ["reviewer", "packet", "simulated", "case", "acceptable_plan1",
                "acceptable_plan2", "preferred", "ai_generated", "comment"]
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for a in docs[2]["answers"]:
            w.writerow({"reviewer": "R3", "packet": docs[2]["packet"], "simulated": "true",
                        **a})
    paths[2].unlink()
    key_path = review["dir"] / "key" / "key.json"
    reports = evaluation_reports_of(review["key"])
    assert sorted(p.name for p in reports) == ["report.html", "report.html"]
    out = tmp_path / "analysis"
    for _ in range(2):  # a second analysis replaces the first, in the reports too
        summary = analyze_review(key_path, tmp_path / "answers", out,
                                 evaluation_reports=reports)
    assert summary["simulated"] and summary["reviewers"] == 3 and summary["cases"] == 4
    for name in ("answers_scored", "case_scores", "agreement_rates", "fleiss_kappa",
                 "dosimetry_by_preference", "comment_keywords"):
        assert (out / "tables" / f"{name}.csv").is_file(), name
    assert (out / "figures" / "fig3_review.png").is_file()
    assert {p.name for p in (out / "figures").glob("dosimetry_by_preference_*.png")} == {
        "dosimetry_by_preference_breast.png", "dosimetry_by_preference_lung.png"}
    report = (out / "report.html").read_text()
    assert "SIMULATED REVIEWERS" in report and "(SIMULATED reviewers)" in report
    for r in reports:
        text = r.read_text()
        assert text.count("blinded-review:begin") == 1 and "SIMULATED REVIEWERS" in text
    rates = list(csv.DictReader(open(out / "tables" / "agreement_rates.csv")))
    levels = {(r["level"], r["site"], r["institution"]) for r in rates}
    assert {("site_institution", "lung", "A"), ("site_institution", "lung", "C"),
            ("site_institution", "breast", "B"), ("institution", "all", "B"),
            ("site", "lung", "all"), ("overall", "all", "all")} <= levels


# ---------------------------------------------------------------- a real browser
CHROME_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync")


def _browser():
    webdriver = pytest.importorskip("selenium.webdriver")
    binary = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                   if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if not (binary and driver):
        pytest.skip("no chromium + chromedriver installed (apt-get install chromium "
                    "chromium-driver)")
    return webdriver, binary, driver


def test_a_packet_in_headless_chromium(review, tmp_path):
    webdriver, binary, driver_path = _browser()
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in (*CHROME_ARGS, f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(arg)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        drv.execute_cdp_cmd("Browser.setDownloadBehavior",
                            {"behavior": "allow", "downloadPath": str(downloads)})
        packet = review["dir"] / "packets" / "review_R2.html"
        drv.get(packet.as_uri())
        codes = [e.get_attribute("id")[len("case-"):]
                 for e in drv.find_elements(By.CSS_SELECTOR, "section.case")]
        assert codes == review["key"]["reviewers"][1]["order"]
        drv.find_element(By.ID, "export-json").click()  # nothing answered: refused
        assert "Not exported" in drv.find_element(By.ID, "message").text
        assert list(downloads.iterdir()) == []
        pattern = {"acceptable_plan1": "agree", "acceptable_plan2": "disagree",
                   "preferred": "plan1", "ai_generated": "cannot_judge"}
        for i, code in enumerate(codes):
            for field, value in pattern.items():
                el = drv.find_element(By.CSS_SELECTOR,
                                      f'input[name="{code}.{field}"][value="{value}"]')
                drv.execute_script("arguments[0].scrollIntoView();", el)
                el.click()
            box = drv.find_element(By.CSS_SELECTOR, f'textarea[name="{code}.comment"]')
            drv.execute_script("arguments[0].scrollIntoView();", box)
            box.send_keys(f'hot spot, "better" coverage {i}')
        drv.refresh()  # the answers survive a reload (localStorage)
        assert drv.find_element(By.ID, "progress").text.startswith(f"{len(codes)} of")
        drv.find_element(By.ID, "export-json").click()
        deadline = time.time() + 30
        while time.time() < deadline and not list(downloads.glob("*.json")):
            time.sleep(0.2)
        assert "Exported" in drv.find_element(By.ID, "message").text
    finally:
        drv.quit()
    exported = list(downloads.glob("*.json"))
    assert [p.name for p in exported] == ["answers_R2.json"]
    answers = tmp_path / "answers"
    answers.mkdir()
    shutil.copy(exported[0], answers)
    out = tmp_path / "analysis"
    summary = analyze_review(review["dir"] / "key" / "key.json", answers, out)
    assert summary["reviewers"] == 1 and not summary["simulated"]
    assert summary["missing_reviewers"] == ["R1", "R3"]
    rows = list(csv.DictReader(open(out / "tables" / "answers_scored.csv")))
    assert len(rows) == len(codes)
    new_plan = {c["code"]: c["new_plan"] for c in review["key"]["cases"]}
    for r in rows:  # Plan 1 acceptable and preferred: so is ATP exactly when it is Plan 1
        atp_first = new_plan[r["case"]] == 1
        assert r["acceptable"] == str(atp_first) and r["preferred"] == str(atp_first)
        assert r["recognized"] == "False"  # "cannot judge" is a misidentification
        assert r["comment"].startswith('hot spot, "better" coverage')
    assert np.isclose(summary["atp_acceptable_unanimous"],
                      np.mean([new_plan[c] == 1 for c in codes]))
