"""Textbook-value tests of atp.dosimetry.radiobiology (LQ model BED / EQD2)."""

from __future__ import annotations

import numpy as np
import pytest

from atp.dosimetry import bed, eqd2


def test_conventional_60gy_30fx():
    # d = 2 Gy, a/b = 10: BED = 60 (1 + 2/10) = 72 Gy; EQD2 = 60 (2 + 10)/(2 + 10) = 60 Gy.
    assert bed(60.0, n_fractions=30, alpha_beta_gy=10.0) == pytest.approx(72.0)
    assert eqd2(60.0, n_fractions=30, alpha_beta_gy=10.0) == pytest.approx(60.0)
    # a/b = 3: BED = 60 (1 + 2/3) = 100 Gy; EQD2 is still 60 Gy for 2-Gy fractions.
    assert bed(60.0, n_fractions=30, alpha_beta_gy=3.0) == pytest.approx(100.0)
    assert eqd2(60.0, n_fractions=30, alpha_beta_gy=3.0) == pytest.approx(60.0)


def test_hypofractionated():
    # 25 Gy / 5 fx, d = 5 Gy, a/b = 10: EQD2 = 25 (5 + 10)/12 = 31.25 Gy; BED = 25 * 1.5.
    assert eqd2(25.0, n_fractions=5, alpha_beta_gy=10.0) == pytest.approx(31.25)
    assert bed(25.0, n_fractions=5, alpha_beta_gy=10.0) == pytest.approx(37.5)
    # SBRT 54 Gy / 3 fx, d = 18 Gy, a/b = 10: BED = 54 (1 + 1.8) = 151.2 Gy;
    # EQD2 = BED / (1 + 2/10) = 126 Gy.
    assert bed(54.0, n_fractions=3, alpha_beta_gy=10.0) == pytest.approx(151.2)
    assert eqd2(54.0, n_fractions=3, alpha_beta_gy=10.0) == pytest.approx(126.0)


def test_per_voxel_arrays():
    # Each voxel's dose spread over 30 fractions, a/b = 10:
    # 30 Gy -> d = 1: BED = 30 * 1.1 = 33, EQD2 = 30 * 11/12 = 27.5; 0 Gy -> 0.
    dose = np.array([[0.0, 60.0], [30.0, 60.0]], dtype=np.float32)
    b = bed(dose, n_fractions=30, alpha_beta_gy=10.0)
    e = eqd2(dose, n_fractions=30, alpha_beta_gy=10.0)
    assert isinstance(b, np.ndarray) and b.shape == dose.shape and b.dtype == np.float64
    np.testing.assert_allclose(b, [[0.0, 72.0], [33.0, 72.0]])
    np.testing.assert_allclose(e, [[0.0, 60.0], [27.5, 60.0]])
    assert isinstance(bed(60, n_fractions=30, alpha_beta_gy=10), float)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_fractions": 0, "alpha_beta_gy": 10.0}, "n_fractions"),
        ({"n_fractions": 0.5, "alpha_beta_gy": 10.0}, "n_fractions"),
        ({"n_fractions": 30, "alpha_beta_gy": 0.0}, "alpha_beta_gy"),
        ({"n_fractions": 30, "alpha_beta_gy": -3.0}, "alpha_beta_gy"),
    ],
)
def test_bad_input_raises(kwargs, match):
    for fn in (bed, eqd2):
        with pytest.raises(ValueError, match=match):
            fn(60.0, **kwargs)


def test_physical_dose_for_eqd2_inverts_eqd2():
    from atp.dosimetry import physical_dose_for_eqd2

    # 25 Gy in 25 fx at a/b 3: EQD2 = 25 (1 + 3) / 5 = 20 Gy, so 20 Gy EQD2 -> 25 Gy
    assert physical_dose_for_eqd2(20.0, n_fractions=25, alpha_beta_gy=3.0) == \
        pytest.approx(25.0)
    # 2-Gy fractions are their own EQD2: 60 Gy in 30 fx
    assert physical_dose_for_eqd2(60.0, n_fractions=30, alpha_beta_gy=3.0) == \
        pytest.approx(60.0)
    e = np.array([0.0, 5.0, 20.0, 45.0])
    for n, ab in ((5, 3.0), (15, 10.0), (28, 2.0)):
        d = physical_dose_for_eqd2(e, n_fractions=n, alpha_beta_gy=ab)
        np.testing.assert_allclose(eqd2(d, n_fractions=n, alpha_beta_gy=ab), e, atol=1e-12)
    with pytest.raises(ValueError, match="eqd2_gy"):
        physical_dose_for_eqd2(-1.0, n_fractions=5, alpha_beta_gy=3.0)
