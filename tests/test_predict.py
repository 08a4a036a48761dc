"""`predict.py`: a folder of cases in, predictions and the challenge's scores out."""

from __future__ import annotations

import shutil

import numpy as np
import pytest


@pytest.fixture()
def compose_predict(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from atp.config import CONF_DIR, register_resolvers

    register_resolvers()

    def _compose(overrides):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name="predict", overrides=overrides)
        with open_dict(cfg):
            cfg.paths.output_dir = str(tmp_path / "run")
        return cfg

    return _compose


def test_submission_csvs_and_scores_equal_the_scorer(tiny_checkpoint, openkbp_dir,
                                                     compose_predict, tmp_path, capsys):
    from atp.dosimetry import cohort_scores, dose_score, openkbp_dvh_metrics
    from atp.io.openkbp import load_openkbp_patient, read_openkbp_dose
    from predict import predict

    cfg = compose_predict([f"ckpt_path={tiny_checkpoint}", "format=openkbp", "max_cases=2",
                           f"input={openkbp_dir / 'validation-pats'}"])
    scores = predict(cfg)
    printed = capsys.readouterr().out
    written = sorted((tmp_path / "run" / "predictions").glob("pt_*.csv"))
    assert [p.stem for p in written] == ["pt_201", "pt_202"]
    # the existing scorer on the submission files as the challenge reads them
    doses, refs, preds = [], [], []
    for path in written:
        case = load_openkbp_patient(openkbp_dir / "validation-pats" / path.stem)
        pred = read_openkbp_dose(path)
        rois = {n: r.mask for n, r in case.rois.items() if r.role != "external"}
        kw = {"spacing_mm": case.spacing_mm, "target_names": set(case.targets)}
        doses.append(dose_score(case.dose_gy, pred, case.dose_mask))
        refs.append(openkbp_dvh_metrics(case.dose_gy, rois, **kw))
        preds.append(openkbp_dvh_metrics(pred, rois, **kw))
    expected = cohort_scores(doses, refs, preds)
    assert scores["dose_score"] == pytest.approx(expected["dose_score"], rel=1e-9)
    assert scores["dvh_score"] == pytest.approx(expected["dvh_score"], rel=1e-9)
    assert f"dose score {expected['dose_score']:.4f} Gy" in printed
    assert f"DVH score {expected['dvh_score']:.4f} Gy" in printed
    assert (tmp_path / "run" / "scores.csv").read_text().count("\n") == 3


def test_a_folder_without_dose_predicts_without_error(tiny_checkpoint, openkbp_dir,
                                                      compose_predict, tmp_path):
    from predict import predict

    test_pats = tmp_path / "test-pats"
    shutil.copytree(openkbp_dir / "validation-pats" / "pt_201", test_pats / "pt_201")
    (test_pats / "pt_201" / "dose.csv").unlink()
    cfg = compose_predict([f"ckpt_path={tiny_checkpoint}", f"input={test_pats}"])
    assert predict(cfg) == {}  # nothing to score
    dose = np.load(tmp_path / "run" / "predictions" / "pt_201.npy")
    assert dose.shape == (128, 128, 128) and dose.max() > 0


def test_rtdose_for_case_files(tiny_checkpoint, compose_predict, tmp_path):
    import pydicom
    from omegaconf import OmegaConf

    from predict import predict

    run_cfg = OmegaConf.load(tiny_checkpoint.parent.parent / "config.yaml")
    cases = sorted(__import__("pathlib").Path(run_cfg.data.root).glob("*.npz"))
    folder = tmp_path / "cases"
    folder.mkdir()
    shutil.copy(cases[0], folder / cases[0].name)
    cfg = compose_predict([f"ckpt_path={tiny_checkpoint}", f"input={folder}", "format=dicom",
                           "site=lung"])
    scores = predict(cfg)
    assert scores["n_patients"] == 1  # the synthetic case has its reference plan
    rd = next((tmp_path / "run" / "predictions").glob("*/RD.dcm"))
    assert pydicom.dcmread(rd).Modality == "RTDOSE"
