"""`ChannelLayout`: the input channels, compact cases, the coarse grid and the checkpoint
round trip of the layout."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from atp.cases import PatientCase, Prescription, Roi
from atp.data import ChannelLayout
from atp.sites import load_site_config


def _case(shape=(8, 10, 12), *, laterality=None) -> PatientCase:
    rng = np.random.default_rng(0)
    body = np.zeros(shape, bool)
    body[1:-1, 1:-1, 1:-1] = True
    lung_l = np.zeros(shape, bool)
    lung_l[2:5, 2:6, 7:10] = True
    ptv_hi = np.zeros(shape, bool)
    ptv_hi[3:5, 4:6, 3:5] = True
    ptv_lo = np.zeros(shape, bool)
    ptv_lo[2:6, 3:7, 2:6] = True
    return PatientCase(
        patient_id="p", ct_hu=rng.uniform(-1200, 2500, shape).astype(np.float32),
        spacing_mm=(2.5, 3.0, 3.0),
        rois={"body": Roi(body, "external"), "lung_l": Roi(lung_l, "organ"),
              "ptv_6000": Roi(ptv_hi, "target"), "ptv_5000": Roi(ptv_lo, "target")},
        prescriptions=(Prescription("ptv_6000", 60.0, 30), Prescription("ptv_5000", 50.0, 30)),
        dose_gy=rng.uniform(0, 65, shape).astype(np.float32),
        metadata={"laterality": laterality} if laterality else {})


LAYOUT = ChannelLayout(organs=("lung_l", "heart", "lung_r"), reference_rx_gy=60.0)


def test_names_and_the_rx_channel():
    assert LAYOUT.names == ["lung_l", "heart", "lung_r", "targets_rx", "ct"]
    assert LAYOUT.n_channels == 5 and LAYOUT.rx_channel == 3
    assert LAYOUT.roi_names == ["lung_l", "heart", "lung_r", "targets"]
    no_ct = ChannelLayout(organs=("heart",), reference_rx_gy=60.0, include_ct=False)
    assert no_ct.names == ["heart", "targets_rx"]
    assert ChannelLayout.from_dict(LAYOUT.to_dict()) == LAYOUT
    with pytest.raises(ValueError, match="unknown channel layout field"):
        ChannelLayout.from_dict({**LAYOUT.to_dict(), "organ": []})


def test_channels_by_hand():
    case = _case()
    arrays = LAYOUT.region(LAYOUT.compact(case))
    img = arrays["image"]
    assert img.dtype == np.float32 and img.shape == (5, *case.shape)
    np.testing.assert_array_equal(img[0], case.mask("lung_l"))
    assert not img[1].any() and not img[2].any()  # organs the case lacks: empty channels
    # the highest prescription where the targets overlap, / 60 Gy
    expected_rx = np.where(case.mask("ptv_6000"), 1.0, np.where(case.mask("ptv_5000"),
                                                                50 / 60, 0.0))
    np.testing.assert_allclose(img[3], expected_rx, rtol=1e-6)
    ct = np.rint(np.clip(case.ct_hu, -1000, 2000)) / 1000  # CT stored as whole HU
    np.testing.assert_allclose(img[4], ct, atol=1e-6)
    np.testing.assert_allclose(arrays["dose"][0], case.dose_gy / 60, rtol=1e-6)
    assert arrays["rois"].dtype == bool and arrays["rois"].shape == (4, *case.shape)
    np.testing.assert_array_equal(arrays["rois"][3], case.target_union())
    np.testing.assert_array_equal(arrays["body"][0], case.body_mask)


def test_a_box_outside_the_case_is_zero():
    case = _case()
    cc = LAYOUT.compact(case)
    arrays = LAYOUT.region(cc, (-2, 0, 5), (4, 10, 16))
    assert arrays["image"].shape == (5, 6, 10, 11)
    assert not arrays["image"][:, :2].any() and not arrays["image"][:, :, :, 7:].any()
    full = LAYOUT.region(cc)
    np.testing.assert_array_equal(arrays["image"][:, 2:, :, :7], full["image"][:, :4, :, 5:])


def test_mirroring_flips_x_and_swaps_sides():
    layout = ChannelLayout(organs=("lung_l", "heart", "lung_r"), reference_rx_gy=60.0,
                           mirror_to="right")
    case = _case(laterality="left")
    cc = layout.compact(case)
    assert cc.mirrored
    # the left lung, flipped along x, is now the right lung's channel
    np.testing.assert_array_equal(cc.organs[2], np.flip(case.mask("lung_l"), -1))
    assert not cc.organs[0].any()
    pred = np.arange(cc.body.size, dtype=np.float32).reshape(cc.shape)
    np.testing.assert_array_equal(layout.to_case_grid(pred, cc), np.flip(pred, -1))
    assert not layout.compact(_case(laterality="right")).mirrored


def test_coarse_grid_block_means_and_back():
    layout = ChannelLayout(organs=("lung_l",), reference_rx_gy=60.0, downsample=2)
    case = _case(shape=(8, 10, 13))  # x not divisible by 2: padded
    cc = layout.compact(case)
    assert cc.shape == (4, 5, 7) and cc.spacing_mm == (5.0, 6.0, 6.0)
    # dose: the mean of each 2^3 block (the last x block half outside: zero padding)
    d = case.dose_gy / 60
    assert cc.dose[1, 2, 3] == pytest.approx(d[2:4, 4:6, 6:8].mean(), rel=1e-5)
    # masks: a majority vote (ties inside)
    lung = case.mask("lung_l")
    assert cc.organs[0, 1, 1, 4] == (lung[2:4, 2:4, 8:10].sum() >= 4)
    # a constant prediction comes back constant on the full grid
    up = layout.to_case_grid(np.full(cc.shape, 7.0, np.float32), cc)
    assert up.shape == case.shape and np.allclose(up, 7.0)


def test_compact_openkbp_case_is_small(openkbp_cases):
    from omegaconf import OmegaConf

    from atp.config import CONF_DIR

    node = OmegaConf.load(CONF_DIR / "data" / "openkbp.yaml").layout
    layout = ChannelLayout.from_dict(OmegaConf.to_container(node))
    assert len(layout.organs) == 7  # OpenKBP's own organs, not npc's 15
    cc = layout.compact(openkbp_cases[0])
    assert cc.organs.dtype == bool and cc.ct_hu.dtype == np.int16
    assert cc.nbytes / 2**20 <= 50  # issue 18: it was about 185 MB


def test_checkpoint_round_trip_of_the_layout(tiny_checkpoint, tmp_path):
    from omegaconf import OmegaConf

    from atp.models.predict import load_module, predict_case

    saved = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)
    layout = saved["hyper_parameters"]["layout"]
    assert layout == ChannelLayout.for_site(load_site_config("lung")).to_dict()
    module = load_module(tiny_checkpoint)
    assert module.layout == ChannelLayout.from_dict(layout)
    assert module.net.in_channels == module.layout.n_channels
    # a checkpoint saved before the layout was stored: rebuilt from its roi_names
    hp = dict(saved["hyper_parameters"])
    del hp["layout"]
    hp.update(roi_names=[*layout["organs"], "targets"], reference_rx_gy=60.0)
    (tmp_path / "checkpoints").mkdir()
    old = tmp_path / "checkpoints" / "old.ckpt"
    torch.save({**saved, "hyper_parameters": hp}, old)
    shutil.copy(tiny_checkpoint.parent.parent / "config.yaml", tmp_path / "config.yaml")
    legacy = load_module(old)
    assert legacy.layout == module.layout
    # both predict the same dose on a case's own grid
    from atp.io.loading import load_any_case

    run_cfg = OmegaConf.load(tmp_path / "config.yaml")
    from atp.data import datamodule_for_site

    dm = datamodule_for_site(site=OmegaConf.to_container(run_cfg.site, resolve=True),
                             source="synthetic", root=run_cfg.data.root)
    dm.setup()
    case = load_any_case(dm.splits["val"][0])
    a, b = predict_case(module, case), predict_case(legacy, case)
    assert a.shape == case.shape and np.array_equal(a, b)


def test_distance_prior_channel_and_its_full_resolution():
    import dataclasses

    from atp.baselines import DistanceBaseline

    case = _case()
    layout = ChannelLayout(organs=("lung_l",), reference_rx_gy=60.0, prior="distance")
    assert layout.names == ["lung_l", "targets_rx", "prior", "ct"]
    assert layout.prior_channel == 2 and layout.rx_channel == 1
    with pytest.raises(ValueError, match="not fitted"):
        layout.compact(case)
    fitted = layout.fit_prior([case])
    assert ChannelLayout.from_dict(fitted.to_dict()) == fitted  # plain lists in a checkpoint
    expected = DistanceBaseline.fit([case]).predict(case) / 60.0
    arrays = fitted.region(fitted.compact(case))
    np.testing.assert_allclose(arrays["image"][2], expected, rtol=1e-6)
    # on a coarse grid only the network's correction is upsampled: a prediction equal to
    # the coarse prior (no correction) comes back as the full-resolution prior
    coarse = dataclasses.replace(fitted, downsample=2)
    cc = coarse.compact(case)
    np.testing.assert_allclose(coarse.to_case_grid(cc.prior, cc, case=case), expected,
                               atol=1e-6)


def test_the_network_starts_from_the_prior():
    from atp.models import DosePredictionModule
    from atp.nets import CADUNet

    layout = ChannelLayout(organs=("lung_l",), reference_rx_gy=60.0, prior="distance")
    layout = layout.fit_prior([_case()])
    net = CADUNet(3, layout.n_channels, 1, features=(4, 8), out_act=None)
    module = DosePredictionModule(net=net, layout=layout.to_dict(), patch_size=(8, 8, 8))
    x = torch.rand(1, layout.n_channels, 8, 8, 8)
    torch.testing.assert_close(module(x), x[:, 2:3])
    loss = (module(x) - 1.0).square().mean()
    loss.backward()
    assert module.prior_gain.grad.abs().item() > 0  # the correction is switched on by training


def test_compact_cases_are_cached_on_disk(tmp_path, monkeypatch):
    import dataclasses

    from atp.cases import save_case
    from atp.data import CaseDataset
    from atp.data import dataset as dataset_module

    path = save_case(_case(), tmp_path / "p.npz")
    ds = CaseDataset([path], site="lung", layout=LAYOUT, cache_dir=tmp_path / "cache")
    first = ds.load(0)
    assert len(list((tmp_path / "cache").glob("p_*.npz"))) == 1

    def no_reading(*args, **kwargs):
        raise AssertionError("the case was read again")

    monkeypatch.setattr(dataset_module, "load_any_case", no_reading)
    again = CaseDataset([path], site="lung", layout=LAYOUT, cache_dir=tmp_path / "cache")
    second = again.load(0)
    for key in ("organs", "rx_index", "rx_levels", "body", "ct_hu", "dose"):
        np.testing.assert_array_equal(getattr(first, key), getattr(second, key))
    assert second.spacing_mm == first.spacing_mm and second.case_shape == first.case_shape
    # another layout is another entry
    other = CaseDataset([path], site="lung", layout=dataclasses.replace(LAYOUT, downsample=2),
                        cache_dir=tmp_path / "cache")
    with pytest.raises(AssertionError, match="read again"):
        other.load(0)
