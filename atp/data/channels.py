"""The network's input channels: one `ChannelLayout` builds them and names the Rx channel.

Channel order (`ChannelLayout.names`): one binary channel per organ, in the layout's order
(an organ the case lacks is an empty channel); ``targets_rx``, each target voxel's
prescribed dose (the highest where targets overlap) divided by the reference
prescription; and optionally ``ct``, the CT clipped to [-1000, 2000] HU and divided by
1000. The dose target is also divided by the reference prescription. The loss masks
(`ChannelLayout.roi_names`) are the organs, then the union of the targets.

A layout may also mirror cases treated on the other side (``mirror_to``: left-sided
breast cases are flipped to the right and their left/right organ channels swapped), work
on a coarser grid (``downsample``: block means of f^3 voxels for CT and dose, majority
votes for the masks; predictions are upsampled back, trilinear) and add a ``prior``
channel: the dose of the distance-to-target baseline (`atp.baselines.DistanceBaseline`,
its fall-off curve fitted on the training cases), which the network then corrects (it
predicts the difference). With a coarse grid the prior is added back at full resolution,
so the sharp fall-off next to the targets is not lost to the upsampling. The layout is
saved in the model checkpoint as a plain dict (`ChannelLayout.to_dict`), so prediction
rebuilds exactly the channels the network was trained on.

Cases are kept as `CompactCase` (bool masks, int16 CT, a uint8 index into the
prescription levels, float32 dose); `ChannelLayout.region` builds the float32 network
arrays of any box of it, so training builds the input of one patch only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from atp.cases import CaseError, PatientCase
from atp.data.compact import CompactCase
from atp.names import SITE_ORGANS

log = logging.getLogger(__name__)

CT_RANGE_HU = (-1000.0, 2000.0)
#: sites whose cases the network sees on one canonical side (the others are mirrored)
CANONICAL_SIDE: dict[str, str] = {"breast": "right"}
#: left/right suffixes swapped when a case is mirrored
_SIDES = ("_l", "_r")


def mirror_permutation(organs: Sequence[str]) -> list[int]:
    """Channel order after a left-right flip: ``x_l`` and ``x_r`` swap places."""
    index = {n: i for i, n in enumerate(organs)}
    perm = []
    for name in organs:
        twin = None
        for a, b in (_SIDES, _SIDES[::-1]):
            if name.endswith(a):
                twin = name[: -len(a)] + b
        perm.append(index.get(twin, index[name]) if twin else index[name])
    return perm


@dataclass(frozen=True)
class ChannelLayout:
    """The input channels of the dose network (see the module docstring).

    Parameters
    ----------
    organs : sequence of str
        One input channel (and one loss mask) per organ, in this order.
    reference_rx_gy : float
        Dose and prescription channels are divided by it.
    include_ct : bool
        Whether the CT is the last channel.
    mirror_to : {"left", "right"} or None
        Cases whose ``metadata["laterality"]`` is the other side are flipped along x.
    downsample : int
        Integer block size of the working grid (1: the case grid).
    prior : None, "distance" or mapping
        No prior channel; one still to be fitted on the training cases (`fit_prior`); or
        the fitted curve ``{"bin_edges_mm": [...], "relative_dose": [...]}``.
    """

    organs: tuple[str, ...]
    reference_rx_gy: float
    include_ct: bool = True
    mirror_to: str | None = None
    downsample: int = 1
    prior: str | Mapping | None = None
    _perm: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        return hash(json_key(self.to_dict()))

    def __post_init__(self):
        object.__setattr__(self, "organs", tuple(str(o) for o in self.organs))
        object.__setattr__(self, "reference_rx_gy", float(self.reference_rx_gy))
        object.__setattr__(self, "include_ct", bool(self.include_ct))
        object.__setattr__(self, "downsample", int(self.downsample))
        if len(set(self.organs)) != len(self.organs):
            raise ValueError(f"layout organs are not unique: {list(self.organs)}")
        if not self.reference_rx_gy > 0:
            raise ValueError(f"layout reference_rx_gy must be > 0, got {self.reference_rx_gy}")
        if self.mirror_to not in (None, "left", "right"):
            raise ValueError(f"layout mirror_to must be left, right or null, got "
                             f"{self.mirror_to!r}")
        if self.downsample < 1:
            raise ValueError(f"layout downsample must be >= 1, got {self.downsample}")
        if isinstance(self.prior, Mapping):
            prior = {k: [float(v) for v in self.prior[k]]
                     for k in ("bin_edges_mm", "relative_dose")}
            if len(prior["bin_edges_mm"]) != len(prior["relative_dose"]) + 1:
                raise ValueError("layout prior: bin_edges_mm needs one more value than "
                                 "relative_dose")
            object.__setattr__(self, "prior", prior)
        elif self.prior not in (None, "distance"):
            raise ValueError(f"layout prior must be null, 'distance' or a fitted curve, got "
                             f"{self.prior!r}")
        object.__setattr__(self, "_perm", tuple(mirror_permutation(self.organs)))

    # ------------------------------------------------------------------ names
    @property
    def names(self) -> list[str]:
        """Names of the input channels, in order."""
        return [*self.organs, "targets_rx"] + (["prior"] if self.prior else []) + \
            (["ct"] if self.include_ct else [])

    @property
    def n_channels(self) -> int:
        return len(self.names)

    @property
    def rx_channel(self) -> int:
        """Index of the ``targets_rx`` channel."""
        return len(self.organs)

    @property
    def prior_channel(self) -> int | None:
        """Index of the ``prior`` channel (None without a prior)."""
        return len(self.organs) + 1 if self.prior else None

    @property
    def roi_names(self) -> list[str]:
        """Names of the loss masks (``rois`` of a sample): the organs, then ``targets``."""
        return [*self.organs, "targets"]

    # ------------------------------------------------------------------ construction
    @classmethod
    def for_site(cls, site: Mapping, *, organs: Sequence[str] | None = None,
                 include_ct: bool = True, downsample: int = 1) -> ChannelLayout:
        """The layout of a site config (its organs unless ``organs`` is given)."""
        return cls(organs=tuple(site["organs"] if organs is None else organs),
                   reference_rx_gy=float(site["reference_rx_gy"]), include_ct=include_ct,
                   mirror_to=CANONICAL_SIDE.get(str(site["name"])), downsample=downsample)

    def to_dict(self) -> dict:
        """Plain types only (a checkpoint loads with torch's weights-only unpickler)."""
        prior = dict(self.prior) if isinstance(self.prior, Mapping) else self.prior
        return {"organs": list(self.organs), "reference_rx_gy": self.reference_rx_gy,
                "include_ct": self.include_ct, "mirror_to": self.mirror_to,
                "downsample": self.downsample, "prior": prior}

    @classmethod
    def from_dict(cls, d: Mapping) -> ChannelLayout:
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls) if f.init}
        if unknown:
            raise ValueError(f"unknown channel layout field(s) {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def from_legacy(cls, *, roi_names: Sequence[str], reference_rx_gy: float,
                    in_channels: int) -> ChannelLayout:
        """The layout of a checkpoint saved before layouts were (roi_names only).

        The organs are ``roi_names`` without ``targets``; the CT channel is there when the
        network has one more input channel than organs + Rx; mirroring follows the site
        whose organ list this is (atp's checkpoints always used a site's list).
        """
        organs = [n for n in roi_names if n != "targets"]
        extra = int(in_channels) - len(organs) - 1
        if extra not in (0, 1):
            raise ValueError(f"checkpoint: {in_channels} input channels do not fit "
                             f"{len(organs)} organs + Rx (+ CT)")
        site = next((s for s, o in SITE_ORGANS.items() if list(o) == organs), None)
        log.warning("checkpoint without a channel layout (saved by an older atp): organs "
                    "from its roi_names, CT channel %s, site %s", bool(extra), site)
        return cls(organs=tuple(organs), reference_rx_gy=reference_rx_gy,
                   include_ct=bool(extra), mirror_to=CANONICAL_SIDE.get(site or ""))

    # ------------------------------------------------------------------ prior
    def fit_prior(self, cases) -> ChannelLayout:
        """This layout with its ``prior: distance`` fitted on ``cases`` (an iterable)."""
        from atp.baselines import DistanceBaseline

        fit = DistanceBaseline.fit(cases)
        curve = {"bin_edges_mm": fit.bin_edges_mm.tolist(),
                 "relative_dose": fit.relative_dose.tolist()}
        return dataclasses.replace(self, prior=curve)

    def prior_map(self, case: PatientCase) -> np.ndarray:
        """The prior dose of ``case`` on its own grid, divided by the reference Rx."""
        from atp.baselines import DistanceBaseline

        if not isinstance(self.prior, Mapping):
            raise ValueError(f"layout prior {self.prior!r} is not fitted (fit_prior)")
        baseline = DistanceBaseline(
            bin_edges_mm=np.asarray(self.prior["bin_edges_mm"]),
            relative_dose=np.asarray(self.prior["relative_dose"], dtype=np.float32))
        return baseline.predict(case) / np.float32(self.reference_rx_gy)

    # ------------------------------------------------------------------ cases
    def is_mirrored(self, case: PatientCase) -> bool:
        side = case.metadata.get("laterality")
        return bool(self.mirror_to and side not in (None, self.mirror_to))

    def compact(self, case: PatientCase, *, required: Sequence[str] = (),
                with_dose: bool = True) -> CompactCase:
        """The case on the layout's grid (mirrored, downsampled), compactly stored.

        Raises `CaseError` naming the patient when a required ROI or every target is
        missing.
        """
        src = f"patient {case.patient_id}"
        missing = [r for r in required if r not in case.rois]
        if missing:
            raise CaseError(src, "rois", f"missing required ROI(s) {missing}")
        if not case.prescriptions:
            raise CaseError(src, "prescriptions", "no target with a prescription")
        organs = np.zeros((len(self.organs),) + case.shape, dtype=bool)
        for i, name in enumerate(self.organs):
            if name in case.rois:
                organs[i] = case.rois[name].mask
        rx_map = case.prescribed_dose_map_gy()
        levels = np.unique(rx_map[rx_map > 0])  # ascending
        rx_index = np.searchsorted(levels, rx_map).astype(np.uint8) + (rx_map > 0)
        rx_index[rx_map == 0] = 0
        ct = None
        if self.include_ct:
            ct = np.rint(np.clip(case.ct_hu, *CT_RANGE_HU)).astype(np.int16)
        dose = None
        if with_dose and case.dose_gy is not None:
            dose = (case.dose_gy / np.float32(self.reference_rx_gy)).astype(np.float32)
        body = case.body_mask.copy()
        prior = self.prior_map(case) if self.prior else None
        mirrored = self.is_mirrored(case)
        if mirrored:
            organs = organs[list(self._perm)]
            organs, rx_index, body, ct, dose, prior = (
                None if a is None else np.flip(a, axis=-1)
                for a in (organs, rx_index, body, ct, dose, prior))
        spacing = tuple(float(s) for s in case.spacing_mm)
        if self.downsample > 1:
            f = self.downsample
            organs = _majority(organs, f)
            body = _majority(body, f)
            rx_index = sum((_majority(rx_index >= k, f).astype(np.uint8)
                            for k in range(1, levels.size + 1)),
                           np.zeros(_reduced(rx_index.shape, f), dtype=np.uint8))
            ct = None if ct is None else np.rint(_block_mean(ct, f, fill=CT_RANGE_HU[0])
                                                 ).astype(np.int16)
            dose = None if dose is None else _block_mean(dose, f, fill=0.0)
            prior = None if prior is None else _block_mean(prior, f, fill=0.0)
            spacing = tuple(s * f for s in spacing)
        c = np.ascontiguousarray
        return CompactCase(
            patient_id=case.patient_id, spacing_mm=spacing, organs=c(organs),
            rx_index=c(rx_index), rx_levels=(levels / self.reference_rx_gy).astype(np.float32),
            body=c(body), ct_hu=None if ct is None else c(ct),
            dose=None if dose is None else c(dose), case_shape=case.shape, mirrored=mirrored,
            prior=None if prior is None else c(prior.astype(np.float32)))

    def region(self, cc: CompactCase, lo: Sequence[int] | None = None,
               hi: Sequence[int] | None = None) -> dict[str, np.ndarray]:
        """Network arrays of the box ``[lo, hi)`` of ``cc`` (default: all of it).

        ``image`` (C, ...) float32, ``rois`` (O + 1, ...) bool, ``body`` (1, ...) bool and,
        when the case has a dose, ``dose`` (1, ...) float32. Voxels outside the case are
        zero in every array (as the zero padding of an affine warp).
        """
        shape = np.asarray(cc.shape)
        lo = np.zeros(3, dtype=int) if lo is None else np.asarray(lo, dtype=int)
        hi = shape if hi is None else np.asarray(hi, dtype=int)
        take = _Box(lo, hi, shape)
        organs = take(cc.organs)
        rx_index = take(cc.rx_index)
        out_shape = tuple(int(n) for n in hi - lo)
        image = np.empty((self.n_channels, *out_shape), dtype=np.float32)
        image[: len(self.organs)] = organs
        levels = np.concatenate([[0.0], cc.rx_levels]).astype(np.float32)
        image[self.rx_channel] = levels[rx_index]
        if self.prior:
            if cc.prior is None:
                raise ValueError(f"patient {cc.patient_id}: the layout has a prior channel but "
                                 f"the compact case has no prior")
            image[self.prior_channel] = take(cc.prior)
        if self.include_ct:
            if cc.ct_hu is None:
                raise ValueError(f"patient {cc.patient_id}: the layout has a CT channel but "
                                 f"the compact case has no CT")
            np.multiply(take(cc.ct_hu), np.float32(1e-3), out=image[-1], casting="unsafe")
        out = {"image": image,
               "rois": np.concatenate([organs, (rx_index > 0)[None]], axis=0),
               "body": take(cc.body)[None]}
        if cc.dose is not None:
            out["dose"] = take(cc.dose)[None]
        return out

    def to_case_grid(self, pred: np.ndarray, cc: CompactCase, *,
                     case: PatientCase | None = None) -> np.ndarray:
        """A prediction on the layout's grid back on the case grid: upsampled, unmirrored.

        With a prior on a coarse grid and the ``case`` given, only the network's
        correction is upsampled and the prior is added at the case's resolution.
        """
        out = np.asarray(pred, dtype=np.float32)
        fine_prior = self.prior and self.downsample > 1 and case is not None
        if fine_prior:
            out = out - cc.prior
        if self.downsample > 1:
            import torch
            import torch.nn.functional as F  # noqa: N812

            t = torch.from_numpy(np.ascontiguousarray(out))[None, None]
            up = F.interpolate(t, scale_factor=self.downsample, mode="trilinear",
                               align_corners=False)[0, 0].numpy()
            z, y, x = cc.case_shape
            out = up[:z, :y, :x]
        if cc.mirrored:
            out = np.flip(out, axis=-1)
        if fine_prior:
            out = out + self.prior_map(case)
        return np.ascontiguousarray(out)


class _Box:
    """Cut ``[lo, hi)`` out of the last three axes of arrays, zero outside the volume."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, shape: np.ndarray):
        self.inner = tuple(slice(int(a), int(b)) for a, b in
                           zip(np.maximum(lo, 0), np.minimum(hi, shape), strict=True))
        self.dst = tuple(slice(int(a - l0), int(b - l0)) for a, b, l0 in
                         zip(np.maximum(lo, 0), np.minimum(hi, shape), lo, strict=True))
        self.shape = tuple(int(n) for n in hi - lo)
        self.inside = bool(np.all(lo >= 0) and np.all(hi <= shape))

    def __call__(self, a: np.ndarray) -> np.ndarray:
        lead = a.shape[:-3]
        if self.inside:
            return a[(..., *self.inner)]
        out = np.zeros(lead + self.shape, dtype=a.dtype)
        if all(s.stop > s.start for s in self.dst):
            out[(..., *self.dst)] = a[(..., *self.inner)]
        return out


def json_key(obj) -> str:
    """A stable text key of plain data (sorted keys)."""
    import json

    return json.dumps(obj, sort_keys=True)


def _reduced(shape: Sequence[int], f: int) -> tuple[int, ...]:
    return tuple(-(-int(n) // f) for n in shape[-3:])


def _blocks(a: np.ndarray, f: int, fill) -> np.ndarray:
    """``a`` padded to multiples of ``f`` and reshaped to (..., Z, f, Y, f, X, f)."""
    lead, sp = a.shape[:-3], a.shape[-3:]
    red = _reduced(sp, f)
    pad = [(0, 0)] * len(lead) + [(0, r * f - n) for r, n in zip(red, sp, strict=True)]
    if any(p[1] for p in pad):
        a = np.pad(a, pad, constant_values=fill)
    return a.reshape(*lead, red[0], f, red[1], f, red[2], f)


def _block_mean(a: np.ndarray, f: int, *, fill) -> np.ndarray:
    b = _blocks(a, f, fill)
    n = b.ndim
    return b.mean(axis=(n - 5, n - 3, n - 1), dtype=np.float64).astype(np.float32)


def _majority(mask: np.ndarray, f: int) -> np.ndarray:
    """True where at least half of the block's voxels are (ties count as inside)."""
    b = _blocks(mask, f, False)
    n = b.ndim
    return b.sum(axis=(n - 5, n - 3, n - 1), dtype=np.int32) * 2 >= f ** 3


def postprocess_dose(pred_gy: np.ndarray, case: PatientCase) -> np.ndarray:
    """The study's post-processing: inside targets the dose is the prescribed dose; zero
    outside the body; never negative."""
    out = np.maximum(np.asarray(pred_gy, dtype=np.float32), 0.0)
    targets = case.target_union()
    out[targets] = case.prescribed_dose_map_gy()[targets]
    out[~case.body_mask] = 0.0
    return out
