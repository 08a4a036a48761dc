"""The dose package's layer rule, and a slow end-to-end run on an OpenKBP sample patient."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

OPENKBP = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "openkbp-sample"


def test_dose_package_imports_no_deep_learning_stack():
    code = ("import sys, atp.dose, atp.dose.cache, atp.dose.mu, atp.dose.phantoms; "
            "bad = [m for m in ('torch', 'lightning', 'pytorch_lightning', 'hydra', 'omegaconf') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.slow
def test_nine_fields_on_an_openkbp_patient():
    folder = OPENKBP / "train-pats" / "pt_1"
    if not folder.is_dir():
        pytest.skip(f"OpenKBP sample not found at {folder}")
    from atp.dose import PencilBeamEngine, beams_from_config, default_isocenter_mm
    from atp.io.openkbp import load_openkbp_patient

    case = load_openkbp_patient(folder)
    beams = beams_from_config({"technique": "imrt", "gantry_deg": list(range(0, 360, 40))},
                              isocenter_mm=default_isocenter_mm(case))
    infl = PencilBeamEngine().influence(case, beams)
    assert infl.n_rows == int(case.body_mask.sum())
    dose = infl.dose(np.ones(infl.n_beamlets, dtype=np.float32))
    ptv = case.target_union()
    dist_mm = ndimage.distance_transform_edt(~ptv, sampling=case.spacing_mm)
    far = case.body_mask & (dist_mm > 30.0)
    assert dose[far].mean() < 0.5 * dose[ptv].mean()
    # open fields of 1 MU each: about 1 cGy per field in the target (9 fields)
    assert 0.05 < dose[ptv].mean() < 0.1
