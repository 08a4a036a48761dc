"""Even-odd rasterisation, contour tracing and the separable resamplers."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from atp.cases import Grid
from atp.io.dicom import fill_polygons_evenodd, mask_contours_mm, working_grid
from atp.io.dicom.resample import inside_mask, resample_linear, resample_mask


def _mpl_xor(polys, shape):
    ny, nx = shape
    rr, cc = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    pts = np.column_stack([cc.ravel(), rr.ravel()]).astype(float)
    out = np.zeros(ny * nx, dtype=bool)
    for p in polys:
        out ^= MplPath(p).contains_points(pts)
    return out.reshape(shape)


def test_scanline_fill_matches_matplotlib_path_xor():
    rng = np.random.default_rng(3)
    shape = (60, 70)
    for _ in range(20):
        polys = []
        for _ in range(rng.integers(1, 4)):
            n = int(rng.integers(3, 12))
            c = rng.uniform([10, 10], [60, 50])
            ang = np.sort(rng.uniform(0, 2 * np.pi, n))
            rad = rng.uniform(3, 20, n)
            # offsets of 0.37 keep vertices and edges off the pixel centres
            polys.append(np.column_stack([c[0] + rad * np.cos(ang), c[1] + rad * np.sin(ang)])
                         + 0.37)
        np.testing.assert_array_equal(fill_polygons_evenodd(polys, shape), _mpl_xor(polys, shape))


def test_hole_and_islands_are_even_odd():
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    ring = lambda cx, cy, r: np.column_stack([cx + r * np.cos(t), cy + r * np.sin(t)])  # noqa: E731
    polys = [ring(30, 30, 20), ring(30, 30, 10), ring(30, 30, 4), ring(70, 30, 6)]
    m = fill_polygons_evenodd(polys, (60, 90))
    assert m[30, 30] and not m[30, 36] and m[30, 45] and not m[30, 55] and m[30, 70]
    area = np.pi * (20 ** 2 - 10 ** 2 + 4 ** 2 + 6 ** 2)
    assert m.sum() == pytest.approx(area, rel=0.02)
    # clipping: a polygon partly outside the image
    big = fill_polygons_evenodd([ring(0, 0, 30)], (20, 20))
    assert big[0, 0] and big[19, 19] is not None and big.sum() > 300


def test_contours_re_rasterise_to_the_same_mask():
    rng = np.random.default_rng(0)
    m = np.zeros((40, 50), dtype=bool)
    m[5:20, 5:25] = True
    m[9:14, 10:18] = False  # a hole
    m[11, 13] = True  # an island in the hole
    m[25:35, 30:45] = rng.random((10, 15)) > 0.3  # ragged blob with diagonal contacts
    xs, ys = -20.0 + 2.0 * np.arange(50), 10.0 + 3.0 * np.arange(40)
    polys = mask_contours_mm(m, xs, ys)
    uv = [np.column_stack([(p[:, 0] - xs[0]) / 2.0, (p[:, 1] - ys[0]) / 3.0]) for p in polys]
    np.testing.assert_array_equal(fill_polygons_evenodd(uv, m.shape), m)


def test_working_grid_is_centred_and_identity_at_same_spacing():
    g = Grid(origin_mm=(-40.0, -79.0, -95.0), spacing_mm=(2.5, 2.0, 2.0), shape=(36, 80, 96))
    assert working_grid(g, (2.5, 2.0, 2.0)) == g
    w = working_grid(g, 3.0)
    assert w.shape == (30, 53, 64) and w.spacing_mm == (3.0, 3.0, 3.0)
    for a in range(3):
        assert np.mean(w.axis_mm(a)) == pytest.approx(np.mean(g.axis_mm(a)))


def test_linear_resampling_is_exact_for_linear_fields_and_fills_outside():
    src = Grid(origin_mm=(0.0, 0.0, 0.0), spacing_mm=(2.0, 3.0, 1.5), shape=(10, 12, 14))
    z, y, x = np.meshgrid(*src.axes_mm(), indexing="ij")
    f = 1.0 + 0.5 * z - 0.25 * y + 0.125 * x
    dst = Grid(origin_mm=(1.3, -1.0, 0.7), spacing_mm=(1.7, 2.2, 2.9), shape=(12, 18, 9))
    out = resample_linear(f, src, dst, fill=-7.0)
    zz, yy, xx = np.meshgrid(*dst.axes_mm(), indexing="ij")
    inside = inside_mask(src, dst)
    # within half a voxel beyond the outer centres the edge value is kept
    exact = 1.0 + 0.5 * np.clip(zz, 0, 18) - 0.25 * np.clip(yy, 0, 33) + 0.125 * np.clip(
        xx, 0, 19.5)
    np.testing.assert_allclose(out[inside], exact[inside], atol=1e-4)
    assert np.all(out[~inside] == -7.0) and (~inside).any()


@pytest.mark.parametrize("method", ["nearest", "fraction"])
def test_mask_resampling_identity_and_downsampling(method):
    g = Grid(origin_mm=(0.0, 0.0, 0.0), spacing_mm=(1.0, 1.0, 1.0), shape=(30, 30, 30))
    z, y, x = np.meshgrid(*g.axes_mm(), indexing="ij")
    m = (z - 15) ** 2 + (y - 14) ** 2 + (x - 16) ** 2 <= 10 ** 2
    np.testing.assert_array_equal(resample_mask(m, g, g, method=method), m)
    coarse = working_grid(g, 3.0)
    out = resample_mask(m, g, coarse, method=method)
    assert out.sum() * 27 == pytest.approx(m.sum(), rel=0.08)
    assert not resample_mask(np.zeros_like(m), g, coarse, method=method).any()
