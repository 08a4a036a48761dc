"""Leaf sequencing on known fluence maps: fidelity, quantization and machine limits.

Known values: the Millennium-120 geometry (60 pairs, 40 central of 5 mm, 20 outer of
10 mm, boundaries from -200 to 200 mm) is the vendor's; the sweep MU ``c W + sum of
rises`` is the optimal unidirectional sliding window of Spirou and Chui (1994); half a
level of quantization error is what rounding to N levels implies.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from atp.delivery import check_limits, load_machine
from atp.delivery.fluence import (
    BeamletGrid,
    delivered_fluence,
    interval_open_mu,
    pair_targets,
)
from atp.delivery.sliding_window import sequence_sliding_window, sweep_knots
from atp.delivery.step_and_shoot import sequence_step_and_shoot, unit_openings
from atp.delivery.vmat import sequence_arc

GRID = BeamletGrid(-10, -8, 20, 16, 5.0)  # 10 cm x 8 cm of 5 mm beamlets


@pytest.fixture(scope="module")
def machine():
    return load_machine()


def known_maps(rng=None) -> dict[str, np.ndarray]:
    """MU per fraction on GRID: a wedge, a pyramid and a random smooth map (5..30 MU)."""
    u = np.arange(GRID.n_u)[:, None]
    v = np.arange(GRID.n_v)[None, :]
    rng = rng or np.random.default_rng(0)
    smooth = gaussian_filter(rng.random((GRID.n_u, GRID.n_v)), 2.0)
    return {"wedge": 5.0 + 20.0 * u / (GRID.n_u - 1) + 0.0 * v,
            "pyramid": 5.0 + 25.0 * (1 - np.maximum(np.abs(u - 9.5) / 10, np.abs(v - 7.5) / 8)),
            "random": 5.0 + 25.0 * (smooth - smooth.min()) / np.ptp(smooth)}


def test_machine_geometry_and_rows(machine):
    e = machine.leaf_boundaries_mm
    assert machine.n_pairs == 60 and e[0] == -200.0 and e[-1] == 200.0
    w = machine.leaf_widths
    assert np.all(w[:10] == 10.0) and np.all(w[10:50] == 5.0) and np.all(w[50:] == 10.0)
    assert machine.mu_per_mm_at_max_speed == pytest.approx(600 / 60 / 25)
    ov = machine.row_overlap(-4, 8, 5.0)  # 5 mm rows: one central pair each
    assert np.all((ov > 0).sum(axis=1) == 1) and np.allclose(ov.sum(axis=1), 5.0)
    ov = machine.row_overlap(-4, 8, 10.0)  # 10 mm rows: two central pairs each
    assert np.all((ov > 0).sum(axis=1) == 2)
    ov = machine.row_overlap(20, 2, 5.0)  # rows at 100-110 mm: one 10 mm outer pair
    assert (ov > 0).sum() == 2 and np.count_nonzero(ov.sum(axis=0)) == 1
    assert "every leaf covers whole rows" in machine.alignment_note(5.0)
    assert "every row spans whole leaf pairs" in machine.alignment_note(10.0)
    uniform = type(machine)(leaf_widths_mm=((80, 5.0),))
    assert "one to one" in uniform.alignment_note(5.0)
    assert "do not line up" in machine.alignment_note(3.0)
    with pytest.raises(ValueError, match="outside the MLC"):
        machine.row_overlap(40, 2, 5.0)
    with pytest.raises(ValueError, match="unknown settings"):
        type(machine).from_dict({"leaf_speed": 3})


def test_exact_rebuild_matches_time_sampling(machine):
    """The closed-form open MU equals a brute-force sum over fine time steps."""
    rng = np.random.default_rng(3)
    n_cp, n_pairs = 6, 4
    a = np.sort(rng.uniform(-40, 40, size=(n_cp, 2, n_pairs)), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(rng.uniform(0, 5, n_cp - 1))])
    edges = np.linspace(-50, 50, 21)
    exact = interval_open_mu(a, cum, edges, (-45.0, 45.0)).sum(axis=0)
    steps = 4000
    s = (np.arange(steps) + 0.5) / steps
    x = np.linspace(-50, 50, 2001)[:-1] + 0.025
    brute = np.zeros((n_pairs, x.size))
    for j in range(n_cp - 1):
        pos = a[j][None] + s[:, None, None] * (a[j + 1] - a[j])[None]  # (steps, 2, pairs)
        lo = np.clip(pos[:, 0], -45, 45)[..., None]
        hi = np.clip(pos[:, 1], -45, 45)[..., None]
        brute += ((x > lo) & (x < hi)).mean(axis=0) * (cum[j + 1] - cum[j])
    brute = brute.reshape(n_pairs, 20, -1).mean(axis=2)
    assert np.abs(exact - brute).max() < 0.01 * max(cum[-1], 1)


def test_sweep_mu_is_the_classical_optimum():
    """Ideal sweep MU: c * (W + g) + sum of the profile's rises (Spirou and Chui 1994)."""
    profile = np.array([2.0, 5.0, 3.0, 3.0, 7.0, 1.0])
    edges = np.arange(7) * 5.0
    *_, total = sweep_knots(profile, edges, mu_per_mm=0.4, gap_mm=0.5)
    assert total == pytest.approx(0.4 * (30.0 + 0.5) + 2 + 3 + 4)


@pytest.mark.parametrize("name", ["wedge", "pyramid", "random"])
def test_sliding_window_rebuilt_fluence_within_2_percent(machine, name):
    fmap = known_maps()[name]
    target = pair_targets(fmap, np.ones(fmap.shape, bool), GRID, machine)
    seq = sequence_sliding_window(target, GRID, machine, name=name, beam_index=0)
    assert check_limits(seq, machine) == []
    flu, dirs = delivered_fluence(seq, machine, GRID)  # transmission included
    assert dirs.tolist() == [0]
    err = np.abs(flu[0] - fmap).max() / fmap.max()
    print(f"{name}: {seq.mu:.1f} MU, {seq.n_cp} control points, max error {100 * err:.2f} %")
    assert err <= 0.02
    # the transmission is part of it: without it the rebuilt fluence is short
    bare = delivered_fluence(seq, machine, GRID, transmission=False)[0][0]
    assert np.all(bare < fmap + 1e-9) and np.abs(bare - fmap).max() > 0.01 * fmap.max()


@pytest.mark.parametrize("n_levels", [3, 5, 10, 20])
def test_step_and_shoot_quantization_error(machine, n_levels):
    for name, fmap in known_maps().items():
        target = pair_targets(fmap, np.ones(fmap.shape, bool), GRID, machine)
        seq = sequence_step_and_shoot(target, GRID, machine, name=name, beam_index=0,
                                      n_levels=n_levels)
        assert check_limits(seq, machine) == []
        assert seq.info["levels"] == n_levels
        err = np.abs(delivered_fluence(seq, machine, GRID)[0][0] - fmap).max()
        assert err <= fmap.max() / (2 * n_levels) * 1.001, (name, err)
        assert seq.n_segments <= 2 * n_levels * 2  # a few openings per level at most here


def test_unit_openings_rebuild_the_levels():
    rng = np.random.default_rng(1)
    q = rng.integers(0, 6, size=(7, 12))
    left, right = unit_openings(q)
    idx = np.arange(12)
    rebuilt = sum(((idx >= left[:, k:k + 1]) & (idx < right[:, k:k + 1]))
                  for k in range(left.shape[1]))
    assert np.array_equal(rebuilt, q)
    ok = left >= 0
    assert np.all(right[ok] > left[ok])  # every opening is at least one beamlet wide


def _arc_targets(rng, n_dirs, machine, grid):
    base = gaussian_filter(rng.random((grid.n_u, grid.n_v)), 2.0)
    maps = []
    for k in range(n_dirs):
        m = base * (1 + 0.5 * np.sin(k / 3)) + 0.2 * gaussian_filter(
            rng.random((grid.n_u, grid.n_v)), 1.5)
        maps.append(pair_targets(4.0 * m / m.max(), np.ones(m.shape, bool), grid, machine))
    return np.stack(maps)


def test_random_maps_respect_every_machine_limit(machine):
    """Property test (seeded): every sequence of random smooth maps is deliverable."""
    rng = np.random.default_rng(2020)
    for trial in range(8):
        n_u, n_v = int(rng.integers(6, 30)), int(rng.integers(4, 24))
        grid = BeamletGrid(-n_u // 2, -n_v // 2, n_u, n_v, 5.0)
        fmap = gaussian_filter(rng.random((n_u, n_v)), rng.uniform(0.5, 3))
        fmap = rng.uniform(5, 60) * (fmap - fmap.min()) / np.ptp(fmap)
        fmap[rng.random(fmap.shape) < 0.1] = 0.0  # holes and zero beamlets
        target = pair_targets(fmap, np.ones(fmap.shape, bool), grid, machine)
        for seq in (sequence_sliding_window(target, grid, machine, name="sw", beam_index=0),
                    sequence_step_and_shoot(target, grid, machine, name="ss", beam_index=0,
                                            n_levels=int(rng.integers(2, 15)))):
            assert check_limits(seq, machine) == [], (trial, seq.technique)
            gap = seq.leaves_mm[:, 1] - seq.leaves_mm[:, 0]
            assert gap.min() >= machine.min_leaf_gap_mm - 1e-9
        n_dirs = int(rng.integers(4, 16))
        targets = _arc_targets(rng, n_dirs, machine, grid)
        spacing = float(rng.choice([2.0, 4.0, 6.0]))
        start = float(rng.uniform(0, 360))
        sign = 1 if rng.random() < 0.5 else -1
        angles = [(start + sign * (k + 0.5) * spacing) % 360 for k in range(n_dirs)]
        arc = sequence_arc(targets, grid, machine, name="arc", beam_indices=list(range(n_dirs)),
                           gantry_deg=angles, sector_deg=float(rng.uniform(8, 40)))
        assert check_limits(arc, machine) == [], trial
        assert arc.rotation == ("CW" if sign > 0 else "CC")
        assert abs(arc.gantry_deg[-1] - arc.gantry_deg[0]) == pytest.approx(n_dirs * spacing)
        speed = np.abs(np.diff(arc.gantry_deg)) / arc.interval_times_s(machine)
        assert speed.max() <= machine.max_gantry_speed_deg_s * (1 + 1e-6)


def test_vmat_sector_sums_follow_the_targets(machine):
    rng = np.random.default_rng(7)
    targets = _arc_targets(rng, 12, machine, GRID)
    angles = [181 + 4 * (k + 0.5) for k in range(12)]
    arc = sequence_arc(targets, GRID, machine, name="arc1", beam_indices=list(range(12)),
                       gantry_deg=angles, sector_deg=24.0, cps_per_direction=4)
    flu, dirs = delivered_fluence(arc, machine, GRID)
    assert dirs.tolist() == list(range(12))
    assert arc.info["sectors"] == 2 and arc.n_cp == 12 * 4 + 1
    from atp.delivery.fluence import delivered_pair_fluence

    pair, _ = delivered_pair_fluence(arc, machine, GRID)
    for sector in (range(0, 6), range(6, 12)):
        want = targets[list(sector)].sum(axis=0)
        got = pair[list(sector)].sum(axis=0)
        active = want.max(axis=1) > 0
        assert np.abs(got - want)[active].max() <= 0.05 * want.max()
    # a sector takes at least its arc length at full gantry speed
    assert sum(arc.info["sector_times_s"]) >= 48.0 / machine.max_gantry_speed_deg_s - 1e-9


def test_limit_checks_name_injected_violations(machine):
    fmap = known_maps()["random"]
    target = pair_targets(fmap, np.ones(fmap.shape, bool), GRID, machine)
    seq = sequence_sliding_window(target, GRID, machine, name="f1", beam_index=0)
    fast = dataclasses.replace(seq, leaves_mm=seq.leaves_mm.copy())
    fast.leaves_mm[5, :, 30] += 20.0  # 20 mm in one control-point interval
    msgs = check_limits(fast, machine)
    assert any("leaf speed above the maximum" in m and "beam f1" in m for m in msgs)
    shut = dataclasses.replace(seq, leaves_mm=seq.leaves_mm.copy())
    shut.leaves_mm[3, 1, 30] = shut.leaves_mm[3, 0, 30]
    assert any("leaf gap below the minimum" in m for m in check_limits(shut, machine))
    back = dataclasses.replace(seq, cum_mu=seq.cum_mu.copy())
    back.cum_mu[4] = back.cum_mu[2]
    assert any("meterset decreases" in m for m in check_limits(back, machine))
    wide = dataclasses.replace(seq, jaws_mm=(-250.0, 50.0, -40.0, 40.0))
    assert any("jaw X1" in m for m in check_limits(wide, machine))
    slow = dataclasses.replace(machine, max_leaf_speed_mm_s=5.0)
    assert any("leaf speed" in m for m in check_limits(seq, slow))


def test_mu_calibration_scales_mu_not_dose(machine):
    """A machine giving 0.5 cGy/MU at the reference point needs twice the MU for the
    same beamlet weights (the engine's unit is 1 cGy at that point, `atp.dose.mu`)."""
    from types import SimpleNamespace

    from atp.delivery.fluence import plan_weights
    from atp.delivery.sequencing import sequence_plan
    from atp.dose import Beam

    grid_vals = known_maps()["pyramid"]
    iu, iv = np.meshgrid(GRID.iu0 + np.arange(GRID.n_u), GRID.iv0 + np.arange(GRID.n_v),
                         indexing="ij")
    uv = np.stack([(iu.ravel() + 0.5) * 5.0, (iv.ravel() + 0.5) * 5.0], axis=1)
    infl = SimpleNamespace(beams=(Beam(gantry_deg=0.0, label="field1"),),
                           beamlet_beam=np.zeros(uv.shape[0], np.int32),
                           beamlet_uv_mm=uv.astype(np.float32), bixel_mm=5.0,
                           n_beamlets=uv.shape[0],
                           check_weights=lambda w: np.asarray(w, np.float32))
    from atp.delivery.sequencing import SequencingSettings

    w = grid_vals.ravel() * 30  # all fractions
    half_machine = dataclasses.replace(machine, mu_calibration_cgy_per_mu=0.5)
    for mode in ("sliding_window", "step_and_shoot"):
        cfg = SequencingSettings(mode=mode)
        one = sequence_plan(infl, w, machine, cfg, n_fractions=30)
        half = sequence_plan(infl, w, half_machine, cfg, n_fractions=30)
        tol = w.max() * (0.02 if mode == "sliding_window" else 1 / (2 * cfg.n_levels))
        for p in (one, half):  # the same fluence either way (within sequencing accuracy)
            assert np.abs(plan_weights(p, infl) - w).max() <= tol * 1.001
        if mode == "step_and_shoot":  # MU = the levels' sum: twice the fluence, twice the MU
            assert half.mu_per_fraction == pytest.approx(2 * one.mu_per_fraction, rel=0.03)
        else:  # the sweep's c W part does not scale
            assert one.mu_per_fraction < half.mu_per_fraction < 2 * one.mu_per_fraction
