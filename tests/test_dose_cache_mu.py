"""Influence-matrix cache (atomic save, reload, keys) and the MU estimate."""

import numpy as np
import pytest

from atp.dose import (
    Beam,
    PencilBeamEngine,
    beam_mu,
    cached_influence,
    influence_cache_key,
    load_influence,
    save_influence,
    total_mu,
)
from atp.dose.mu import sliding_window_mu
from atp.dose.phantoms import add_target, box_case, world_axes_mm


@pytest.fixture(scope="module")
def case():
    c = box_case((100.0, 160.0, 160.0), (5.0, 5.0, 5.0))
    z, y, x = world_axes_mm(c)
    return add_target(c, (np.abs(z)[:, None, None] <= 20) & (np.abs(y)[None, :, None] <= 20)
                      & (np.abs(x)[None, None, :] <= 20))


def test_save_load_roundtrip(tmp_path, case):
    engine = PencilBeamEngine()
    beams = [Beam(0.0), Beam(90.0, aperture_mm=(-10, 10, -10, 10))]
    infl = engine.influence(case, beams)
    path = save_influence(infl, tmp_path / "sub" / "m.npz", key="abc")
    assert [p.name for p in path.parent.iterdir()] == ["m.npz"]  # no temporary file left
    back = load_influence(path, key="abc")
    assert (back.matrix != infl.matrix).nnz == 0 and back.matrix.indices.dtype == np.int32
    assert np.array_equal(back.voxel_index, infl.voxel_index)
    assert np.array_equal(back.beamlet_beam, infl.beamlet_beam)
    assert back.beams == infl.beams and back.grid == infl.grid
    w = np.linspace(0, 1, infl.n_beamlets)
    assert np.array_equal(back.dose(w), infl.dose(w))
    with pytest.raises(ValueError, match="key mismatch"):
        load_influence(path, key="other")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable influence cache"):
        load_influence(tmp_path / "bad.npz")


def test_cache_key_and_reuse(tmp_path, case, monkeypatch):
    engine = PencilBeamEngine()
    beams = [Beam(0.0), Beam(180.0)]
    key = influence_cache_key(case, beams, engine)
    assert key == influence_cache_key(case, list(beams), PencilBeamEngine())
    assert key != influence_cache_key(case, [Beam(0.0), Beam(170.0)], engine)
    assert key != influence_cache_key(case, beams, PencilBeamEngine(bixel_mm=4.0))
    assert key != influence_cache_key(case, beams, engine, mask=case.body_mask)
    first = cached_influence(engine, case, beams, cache_dir=tmp_path)

    def fail(*args, **kwargs):
        raise AssertionError("recomputed despite the cache")

    monkeypatch.setattr(engine, "influence", fail)
    again = cached_influence(engine, case, beams, cache_dir=tmp_path)
    assert (again.matrix != first.matrix).nnz == 0
    assert len(list(tmp_path.iterdir())) == 1


def test_sliding_window_mu():
    # one leaf pair (a column along u): increments 1 + 2 + 0 + 2 = 5
    assert sliding_window_mu(np.array([[1.0], [3.0], [2.0], [4.0]])) == pytest.approx(5.0)
    # the beam needs the worst leaf pair
    fmap = np.array([[1.0, 2.0], [1.0, 0.0], [1.0, 2.0]])
    assert sliding_window_mu(fmap) == pytest.approx(4.0)
    assert sliding_window_mu(np.full((4, 3), 7.0)) == pytest.approx(7.0)  # open field


def test_mu_calibration_open_reference_field():
    """1 MU = 1 cGy at dmax for 10x10 cm at SSD 100 cm: weight 1 -> 1 MU and ~1 cGy."""
    c = box_case((200.0, 200.0, 200.0), (5.0, 5.0, 5.0))
    z, y, x = world_axes_mm(c)
    surface = y[0] - 2.5
    beam = Beam(0.0, isocenter_mm=(0.0, surface, 0.0), aperture_mm=(-50, 50, -50, 50))
    infl = PencilBeamEngine().influence(c, [beam, beam])
    w = np.concatenate([np.full(400, 1.0), np.full(400, 2.0)])
    assert np.allclose(beam_mu(infl, w), [1.0, 2.0])
    assert total_mu(infl, w) == pytest.approx(3.0)
    dose = infl.dose(np.concatenate([np.ones(400), np.zeros(400)]))
    cax = dose[np.abs(z) < 3][:, :, np.abs(x) < 3].mean(axis=(0, 2))
    assert cax.max() == pytest.approx(0.01, rel=0.02)  # Gy per MU near dmax
