"""The renderer's fast paths against plain-loop references."""

import numpy as np
import pytest
from glyph_testing import DEJAVU_DIR
from PIL import ImageFont
from scipy import ndimage

from metacompose.tasks.glyph_render import (
    StrokeStyle,
    draw_points,
    fit_glyph,
    keep_on_canvas,
    sample_warps,
    skeleton_points,
    skeletonize,
    thin,
    warp_points,
)

EIGHT = np.ones((3, 3), int)


def font():
    return ImageFont.truetype(
        str(DEJAVU_DIR / "DejaVuSans.ttf"), 96, layout_engine=ImageFont.Layout.BASIC
    )


def zhang_suen_reference(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning pixel by pixel, as in the 1984 paper."""
    img = np.pad(mask.astype(int), 1)
    h, w = img.shape
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            remove = []
            for y in range(1, h - 1):
                for x in range(1, w - 1):
                    if not img[y, x]:
                        continue
                    p = [img[y - 1, x], img[y - 1, x + 1], img[y, x + 1], img[y + 1, x + 1],
                         img[y + 1, x], img[y + 1, x - 1], img[y, x - 1], img[y - 1, x - 1]]  # fmt: skip
                    b = sum(p)
                    a = sum(1 for i in range(8) if p[i] == 0 and p[(i + 1) % 8] == 1)
                    if step == 0:
                        ok = p[0] * p[2] * p[4] == 0 and p[2] * p[4] * p[6] == 0
                    else:
                        ok = p[0] * p[2] * p[6] == 0 and p[0] * p[4] * p[6] == 0
                    if 2 <= b <= 6 and a == 1 and ok:
                        remove.append((y, x))
            for y, x in remove:
                img[y, x] = 0
            changed = changed or bool(remove)
    return img[1:-1, 1:-1].astype(bool)


def blobs(seed: int, n: int = 3, size: int = 20) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=(n, size, size)), (0, 1.5, 1.5)) > 0.1


def test_thin_matches_reference():
    masks = np.concatenate([blobs(0), (fit_glyph(font(), "Ж", 20) > 0.5)[None]])
    got = thin(masks)
    for m, g in zip(masks, got):
        np.testing.assert_array_equal(g, zhang_suen_reference(m))
    np.testing.assert_array_equal(thin(masks[0]), got[0])  # a single (H, W) image too


@pytest.mark.parametrize("char", ["A", "B", "Ж", "Ω", "8"])
def test_thin_keeps_topology_and_thins(char):
    mask = fit_glyph(font(), char, 64) > 0.5
    skel = thin(mask)
    assert not (skel & ~mask).any()
    assert ndimage.label(skel, EIGHT)[1] == ndimage.label(mask, EIGHT)[1]
    holes = lambda m: ndimage.label(~np.pad(m, 1))[1]  # noqa: E731  (4-connected background pieces)
    assert holes(skel) == holes(mask)
    assert skel.sum() < 0.5 * mask.sum()


def test_fit_glyph_fills_the_long_side_centred():
    img = fit_glyph(font(), "I", 40)  # tall and thin
    rows, cols = np.nonzero(img > 0.5)
    assert rows.min() <= 1 and rows.max() >= 38
    assert abs((cols.min() + cols.max()) / 2 - 19.5) <= 1.5
    assert img.min() >= 0 and img.max() <= 1
    assert not fit_glyph(font(), " ", 40).any()


def test_skeleton_points_brute_force():
    skel = np.zeros((6, 8), bool)
    skel[1, 1:5] = True  # horizontal run of 4
    skel[2, 5] = True  # diagonal step from (1, 4)
    skel[4, 2] = True  # isolated dot
    pts = skeleton_points(skel)
    pix = [(x, y) for y, x in zip(*np.nonzero(skel))]
    mids = [((x1 + x2) / 2, (y1 + y2) / 2) for i, (x1, y1) in enumerate(pix) for (x2, y2) in pix[i + 1 :]
            if max(abs(x1 - x2), abs(y1 - y2)) == 1]  # fmt: skip
    expect = sorted(((x + 0.5) / 8 * 2 - 1, (y + 0.5) / 6 * 2 - 1) for x, y in pix + mids)
    np.testing.assert_allclose(sorted(map(tuple, pts.tolist())), expect, atol=1e-6)


def test_warp_points_matches_loop():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (7, 2)).astype(np.float32)
    w = sample_warps(rng, 3, StrokeStyle())
    got = warp_points(pts, w)
    for n in range(3):
        for p in range(7):
            q = [sum(float(w["matrix"][n, i, j]) * float(pts[p, j]) for j in range(2)) + float(w["shift"][n, i])
                 for i in range(2)]  # fmt: skip
            out = list(q)
            for m in range(w["freq"].shape[1]):
                arg = q[0] * float(w["freq"][n, m, 0]) + q[1] * float(w["freq"][n, m, 1])
                for d in range(2):
                    out[d] += float(w["amp"][n, m, d]) * np.sin(arg + float(w["phase"][n, m, d]))
            np.testing.assert_allclose(got[n, p], out, atol=1e-5)


def test_sample_warps_respects_style():
    st = StrokeStyle()
    w = sample_warps(np.random.default_rng(1), 500, st)
    assert (w["pen"] >= st.pen[0]).all() and (w["pen"] <= st.pen[1]).all()
    assert np.abs(w["amp"]).max() <= 2 * st.elastic and np.abs(w["shift"]).max() <= 2 * st.shift
    det = np.linalg.det(w["matrix"]) / st.extent**2  # rotation and shear keep area; scales multiply
    assert det.min() >= st.scale[0] ** 2 - 1e-9 and det.max() <= st.scale[1] ** 2 + 1e-9


def test_draw_points_matches_brute_force():
    rng = np.random.default_rng(2)
    pts = rng.uniform(-1.1, 1.1, (2, 9, 2)).astype(np.float32)  # some off the canvas
    pen = np.array([0.05, 0.12])
    size, ss = 6, 2
    got = draw_points(pts, pen, size, supersample=ss)
    big = size * ss
    for n in range(2):
        cells = {
            (int(np.floor((x + 1) / 2 * big)), int(np.floor((y + 1) / 2 * big)))
            for x, y in pts[n].tolist()
        }
        cells = [(x, y) for x, y in cells if 0 <= x < big and 0 <= y < big]
        hi = np.zeros((big, big))
        for y in range(big):
            for x in range(big):
                d = min(np.hypot(x - cx, y - cy) for cx, cy in cells)
                hi[y, x] = min(1.0, max(0.0, pen[n] * big + 0.5 - d))
        lo = hi.reshape(size, ss, size, ss).mean((1, 3))
        np.testing.assert_allclose(got[n].astype(float), np.round(lo * 255), atol=1)
    assert not draw_points(
        np.full((1, 3, 2), 5.0, np.float32), pen[:1], size
    ).any()  # all off canvas


def test_keep_on_canvas():
    rng = np.random.default_rng(3)
    pts = rng.uniform(-1.3, 1.3, (20, 15, 2)).astype(np.float32)
    pen = rng.uniform(0.02, 0.05, 20)
    out = keep_on_canvas(pts, pen, 28)
    limit = 1 - 2 * pen - 3 / 28
    assert (np.abs(out).max((1, 2)) <= limit + 1e-6).all()
    for a, b in zip(pts, out):  # a similarity: distances scale by one factor, never grow
        da = np.linalg.norm(a[:, None] - a[None], axis=-1)
        db = np.linalg.norm(b[:, None] - b[None], axis=-1)
        k = db[da > 0] / da[da > 0]
        np.testing.assert_allclose(k, k[0], rtol=1e-4)
        assert k[0] <= 1 + 1e-6
    inside = pts * 0.5
    np.testing.assert_allclose(keep_on_canvas(inside, pen, 28), inside, atol=1e-7)


def test_skeletonize_keeps_dots_that_thinning_erases():
    mask = np.zeros((2, 12, 12), bool)
    mask[0, 2:4, 2:4] = True  # a 2x2 dot: Zhang-Suen deletes it
    mask[0, 6:10, 5] = True  # a bar: survives thinning
    mask[1] = blobs(4, n=1, size=12)[0]
    assert not thin(mask)[0, 2:4, 2:4].any()
    skel = skeletonize(mask)
    assert skel[0, 2:4, 2:4].sum() == 1 and not (skel & ~mask).any()
    for m, k in zip(mask, skel):
        assert ndimage.label(k, EIGHT)[1] == ndimage.label(m, EIGHT)[1]
    np.testing.assert_array_equal(skel[0, 5:], thin(mask)[0, 5:])  # elsewhere: plain thinning


def test_kept_strokes_leave_the_border_pixels_blank():
    rng = np.random.default_rng(5)
    pts = rng.uniform(-1.5, 1.5, (30, 40, 2)).astype(np.float32)
    pen = rng.uniform(0.02, 0.05, 30)
    img = draw_points(keep_on_canvas(pts, pen, 28), pen, 28)
    assert img.any(axis=(1, 2)).all()
    assert not img[:, [0, -1], :].any() and not img[:, :, [0, -1]].any()
