"""Training patch samplers: crop first, then augment only the patch.

A sampler is called with the shape of a (compact) case and ``read(lo, hi)``, which builds
the network arrays (``image``, ``dose``, ``rois``, ``body``; `ChannelLayout.region`) of a
box of the case; it returns tensors of spatial size ``patch_size``. Only the voxels the
patch needs are ever built or interpolated.

``affine`` (the default): a random rotation about each axis (uniform in
+-``rotate_deg``), one isotropic scale factor per sample (uniform in 1 +- ``scale``, the
study's "uniformly across all axes"), a translation in the axial plane only (uniform in
+-``translate_fraction`` x patch voxels along y and x, none along z: the study shifted by
up to +-64 voxels in the axial plane of a 128 grid, hence 0.5), then the patch: its
centre is drawn as a random crop of the warped volume would place it. Image and dose are
interpolated linearly, the masks by nearest neighbour; outside the case everything is 0.
This is the distribution of the former pipeline (MONAI ``RandAffined`` on the whole volume,
then a random crop), except that the scale is now one factor for the three axes
(``python -m atp.bench.data_pipeline --stats`` compares them). The sample's parameters
are in ``augment``: rotation (degrees, about z, y, x), scale, translation (voxels z, y, x).

``torchio``: the same crop-first region, warped by TorchIO's ``RandomAffine`` (isotropic
scale, rotation; translation as above), centre-cropped to the patch. ``none``: a random
crop (zero-padded where the case is smaller than the patch).

Random draws come from the sampler's own generator (``seed``); `reseed` gives every
DataLoader worker its own stream (`atp.data.datamodule.seed_worker`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

Reader = Callable[[np.ndarray, np.ndarray], dict]


def rotation_matrix(angles_rad: Sequence[float]) -> np.ndarray:
    """Rotation about the z, y and x axes (in that order of application: x first)."""
    a, b, c = (float(v) for v in angles_rad)
    rz = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _tensors(arrays: dict) -> dict:
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


class _Sampler:
    def __init__(self, patch_size: Sequence[int], *, seed: int,
                 translate_fraction: float = 0.0):
        self.patch = np.asarray([int(p) for p in patch_size], dtype=int)
        if self.patch.shape != (3,) or np.any(self.patch < 1):
            raise ValueError(f"patch_size must be three positive integers, got {patch_size}")
        self.shift = np.array([0.0, translate_fraction * self.patch[1],
                               translate_fraction * self.patch[2]])
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the random stream (each DataLoader worker calls this with its seed)."""
        self.rng = np.random.default_rng(int(seed) % 2**63)

    def _crop_centre(self, shape: np.ndarray) -> np.ndarray:
        """Centre of a random crop of size ``patch`` (the case centre where it is smaller)."""
        room = np.maximum(shape - self.patch, 0)
        offset = np.array([self.rng.integers(0, r + 1) for r in room])
        return np.where(shape > self.patch, offset + (self.patch - 1) / 2.0,
                        (shape - 1) / 2.0)


class CropSampler(_Sampler):
    """A random crop of the patch size, no augmentation."""

    def __call__(self, shape: Sequence[int], read: Reader) -> dict:
        shape = np.asarray(shape, dtype=int)
        room = np.maximum(shape - self.patch, 0)
        lo = np.array([self.rng.integers(0, r + 1) for r in room])
        lo = np.where(shape >= self.patch, lo, -((self.patch - shape) // 2))
        return _tensors(read(lo, lo + self.patch))


class AffineSampler(_Sampler):
    """Random rotation, isotropic scale and axial translation of the patch only."""

    def __init__(self, patch_size: Sequence[int], *, rotate_deg: float = 10.0,
                 scale: float = 0.1, translate_fraction: float = 0.5, prob: float = 1.0,
                 seed: int = 2020):
        super().__init__(patch_size, seed=seed, translate_fraction=translate_fraction)
        self.rotate_rad = math.radians(rotate_deg)
        self.scale = float(scale)
        self.prob = float(prob)
        p = self.patch
        offsets = np.stack(np.meshgrid(*[np.arange(n) - (n - 1) / 2.0 for n in p],
                                       indexing="ij")).reshape(3, -1)
        self._offsets = torch.from_numpy(offsets.astype(np.float32))

    def draw(self, shape: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(A, c, params)``: input coordinate of output offset u is ``c + A @ u``."""
        if self.rng.random() < self.prob:
            angles = self.rng.uniform(-self.rotate_rad, self.rotate_rad, 3)
            s = 1.0 + self.rng.uniform(-self.scale, self.scale)
            t = self.rng.uniform(-1.0, 1.0, 3) * self.shift
        else:
            angles, s, t = np.zeros(3), 1.0, np.zeros(3)
        a = s * rotation_matrix(angles)
        centre = (shape - 1) / 2.0
        # the patch centre as a random crop of the warped volume places it (warp about the
        # case centre, then translation)
        c = centre + a @ (self._crop_centre(shape) - centre) + t
        params = np.concatenate([np.degrees(angles), [s], t]).astype(np.float32)
        return a, c, params

    def __call__(self, shape: Sequence[int], read: Reader) -> dict:
        shape = np.asarray(shape, dtype=int)
        a, c, params = self.draw(shape)
        corners = a @ self._corners() + c[:, None]
        lo = np.floor(corners.min(axis=1)).astype(int)
        hi = np.floor(corners.max(axis=1)).astype(int) + 2
        arrays = read(lo, hi)
        coords = (torch.from_numpy(a.astype(np.float32)) @ self._offsets
                  + torch.from_numpy((c - lo).astype(np.float32))[:, None])  # (3, P)
        size = torch.tensor((hi - lo).astype(np.float32))
        out = {}
        # linear: image (+ dose); grid_sample wants (x, y, z) in [-1, 1], corners aligned
        grid = (2.0 * coords / (size[:, None] - 1.0) - 1.0).flip(0).T.reshape(
            1, *self.patch, 3)
        floats = [arrays["image"]] + ([arrays["dose"]] if "dose" in arrays else [])
        stack = np.concatenate(floats, axis=0).astype(np.float32, copy=False)
        stack = torch.from_numpy(stack)[None]
        warped = torch.nn.functional.grid_sample(stack, grid, mode="bilinear",
                                                 padding_mode="zeros", align_corners=True)[0]
        n_img = arrays["image"].shape[0]
        out["image"] = warped[:n_img].contiguous()
        if "dose" in arrays:
            out["dose"] = warped[n_img:].contiguous()
        # nearest: the masks, gathered at the rounded coordinates (all inside the region)
        idx = coords.round().long()
        for k in range(3):
            idx[k].clamp_(0, int(hi[k] - lo[k]) - 1)
        flat = ((idx[0] * int(hi[1] - lo[1]) + idx[1]) * int(hi[2] - lo[2]) + idx[2]).numpy()
        for key in ("rois", "body"):
            m = arrays[key].reshape(arrays[key].shape[0], -1)[:, flat]
            out[key] = torch.from_numpy(m.reshape(m.shape[0], *self.patch))
        out["augment"] = torch.from_numpy(params)
        return out

    def _corners(self) -> np.ndarray:
        h = (self.patch - 1) / 2.0
        return np.array(np.meshgrid(*[(-v, v) for v in h], indexing="ij")).reshape(3, -1)


class TorchioSampler(_Sampler):
    """TorchIO's RandomAffine (isotropic) on a crop-first region, centre-cropped."""

    def __init__(self, patch_size: Sequence[int], *, rotate_deg: float = 10.0,
                 scale: float = 0.1, translate_fraction: float = 0.5, prob: float = 1.0,
                 seed: int = 2020):
        import torchio as tio

        super().__init__(patch_size, seed=seed, translate_fraction=translate_fraction)
        # the region that holds the rotated and scaled patch, plus one voxel
        worst = max(np.abs(rotation_matrix(np.radians(rotate_deg) * np.array(sign))).sum(1)
                    .max() for sign in np.ndindex(2, 2, 2))
        self.region = np.ceil(self.patch * worst * (1.0 + scale)).astype(int) + 2
        self.affine = tio.RandomAffine(scales=scale, degrees=rotate_deg, isotropic=True,
                                       image_interpolation="linear",
                                       label_interpolation="nearest", p=prob)
        self.crop = tio.CropOrPad(tuple(int(p) for p in self.patch))

    def __call__(self, shape: Sequence[int], read: Reader) -> dict:
        import torchio as tio

        shape = np.asarray(shape, dtype=int)
        centre = self._crop_centre(shape) + self.rng.uniform(-1.0, 1.0, 3) * self.shift
        lo = np.rint(centre - (self.region - 1) / 2.0).astype(int)
        arrays = read(lo, lo + self.region)
        # TorchIO images are (C, W, H, D); our (C, z, y, x) arrays are passed as they are
        subject = tio.Subject(
            image=tio.ScalarImage(tensor=torch.from_numpy(arrays["image"])),
            rois=tio.LabelMap(tensor=torch.from_numpy(arrays["rois"]).to(torch.uint8)),
            body=tio.LabelMap(tensor=torch.from_numpy(arrays["body"]).to(torch.uint8)),
            **({"dose": tio.ScalarImage(tensor=torch.from_numpy(arrays["dose"]))}
               if "dose" in arrays else {}))
        out = self.crop(self.affine(subject))
        return {k: out[k].data.bool() if k in ("rois", "body") else out[k].data.float()
                for k in arrays}


def build_augmentation(kind: str = "affine", *, patch_size: Sequence[int],
                       rotate_deg: float = 10.0, scale: float = 0.1,
                       translate_fraction: float = 0.5, prob: float = 1.0,
                       seed: int = 2020) -> _Sampler:
    """The training patch sampler: ``kind`` is ``affine``, ``torchio`` or ``none``."""
    if kind == "affine":
        return AffineSampler(patch_size, rotate_deg=rotate_deg, scale=scale,
                             translate_fraction=translate_fraction, prob=prob, seed=seed)
    if kind == "torchio":
        return TorchioSampler(patch_size, rotate_deg=rotate_deg, scale=scale,
                              translate_fraction=translate_fraction, prob=prob, seed=seed)
    if kind == "none":
        return CropSampler(patch_size, seed=seed)
    raise ValueError(f"augmentation kind '{kind}' is not affine, torchio or none")
