"""The network's input channels: one `ChannelLayout` builds them and names the Rx channel.

Channel order (`ChannelLayout.names`): one binary channel per organ, in the layout's order
(an organ the case lacks is an empty channel); ``targets_rx``, each target voxel's
prescribed dose (the highest where targets overlap) divided by the reference
prescription; and optionally ``ct``, the CT clipped to [-1000, 2000] HU and divided by
1000. The dose target is also divided by the reference prescription. The loss masks
(`ChannelLayout.roi_names`) are the organs, then the union of the targets.

A layout may also mirror cases treated on the other side (``mirror_to``: left-sided
breast cases are flipped to the right and their left/right organ channels swapped) and
work on a coarser grid (``downsample``: block means of 2^3 voxels for CT and dose,
majority votes for the masks; predictions are upsampled back, trilinear). The layout is
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


@dataclass(frozen=True, eq=False)
class CompactCase:
    """One case as the data pipeline keeps it (about 30 MB for an OpenKBP case).

    ``organs`` (O, z, y, x) bool in the layout's order; ``rx_index`` (z, y, x) uint8: 0
    outside the targets, k where the highest prescription is ``rx_levels[k - 1]``
    (ascending, divided by the reference prescription); ``body`` bool; ``ct_hu`` int16
    clipped to `CT_RANGE_HU` (None without a CT channel); ``dose`` float32 divided by the
    reference prescription (None without a dose). Arrays are already mirrored and
    downsampled; ``case_shape`` is the original grid.
    """

    patient_id: str
    spacing_mm: tuple[float, float, float]
    organs: np.ndarray
    rx_index: np.ndarray
    rx_levels: np.ndarray
    body: np.ndarray
    ct_hu: np.ndarray | None
    dose: np.ndarray | None
    case_shape: tuple[int, int, int]
    mirrored: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.body.shape)  # type: ignore[return-value]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.organs, self.rx_index, self.rx_levels, self.body,
                                      self.ct_hu, self.dose) if a is not None)


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
    """

    organs: tuple[str, ...]
    reference_rx_gy: float
    include_ct: bool = True
    mirror_to: str | None = None
    downsample: int = 1
    _perm: tuple[int, ...] = field(init=False, repr=False, compare=False)

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
        object.__setattr__(self, "_perm", tuple(mirror_permutation(self.organs)))

    # ------------------------------------------------------------------ names
    @property
    def names(self) -> list[str]:
        """Names of the input channels, in order."""
        return [*self.organs, "targets_rx"] + (["ct"] if self.include_ct else [])

    @property
    def n_channels(self) -> int:
        return len(self.names)

    @property
    def rx_channel(self) -> int:
        """Index of the ``targets_rx`` channel."""
        return len(self.organs)

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
        return {"organs": list(self.organs), "reference_rx_gy": self.reference_rx_gy,
                "include_ct": self.include_ct, "mirror_to": self.mirror_to,
                "downsample": self.downsample}

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
        mirrored = self.is_mirrored(case)
        if mirrored:
            organs = organs[list(self._perm)]
            organs, rx_index, body, ct, dose = (
                None if a is None else np.flip(a, axis=-1)
                for a in (organs, rx_index, body, ct, dose))
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
            spacing = tuple(s * f for s in spacing)
        c = np.ascontiguousarray
        return CompactCase(
            patient_id=case.patient_id, spacing_mm=spacing, organs=c(organs),
            rx_index=c(rx_index), rx_levels=(levels / self.reference_rx_gy).astype(np.float32),
            body=c(body), ct_hu=None if ct is None else c(ct),
            dose=None if dose is None else c(dose), case_shape=case.shape, mirrored=mirrored)

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

    def to_case_grid(self, pred: np.ndarray, cc: CompactCase) -> np.ndarray:
        """A prediction on the layout's grid back on the case grid: upsampled, unmirrored."""
        out = np.asarray(pred, dtype=np.float32)
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
