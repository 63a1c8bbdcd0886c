"""Handwriting-like renderings of font letters: fit, thin to a skeleton, warp, redraw with a pen.

The pipeline for one letter (one class):

1. :func:`fit_glyph` draws the letter with its font and fits it, aspect kept, into a square.
2. :func:`skeletonize` reduces the binarised glyph to a one-pixel skeleton (Zhang-Suen
   :func:`thin`, keeping every dot), which removes the font's own stroke weight and contrast.
3. :func:`skeleton_points` turns the skeleton into a dense point cloud along the strokes.
4. For each sample, :func:`warp_points` applies a random affine map and a smooth elastic
   displacement (a sum of random low-frequency sinusoids) to the points, and :func:`draw_points`
   redraws them with a round pen of random width, anti-aliased by supersampling; a sample that
   the distortion pushed over the edge is moved back (and shrunk if need be) by
   :func:`keep_on_canvas`, as a writer keeps a letter inside its box.

All randomness comes from a ``numpy.random.Generator`` that the caller passes in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from metacompose.optional import require


@dataclass(frozen=True)
class StrokeStyle:
    """How much a rendered sample varies. Lengths are fractions of the canvas side.

    Args:
        extent: side of the square the undistorted letter fills.
        rotation: largest rotation, radians.
        shear: largest horizontal shear.
        scale: range of the overall scale factor.
        aspect: largest log-ratio between the x and y scale.
        shift: largest translation of the centre.
        elastic: amplitude of each elastic displacement mode.
        elastic_modes: number of random sinusoidal displacement modes.
        elastic_freq: range of their spatial frequencies, cycles per canvas side.
        pen: range of the pen radius.
    """

    extent: float = 0.8
    rotation: float = 0.2
    shear: float = 0.25
    scale: tuple[float, float] = (0.8, 1.05)
    aspect: float = 0.15
    shift: float = 0.06
    elastic: float = 0.028
    elastic_modes: int = 4
    elastic_freq: tuple[float, float] = (0.6, 1.6)
    pen: tuple[float, float] = (0.02, 0.042)


def fit_glyph(font: ImageFont.FreeTypeFont, char: str, size: int) -> np.ndarray:
    """Draw ``char`` and fit its ink box, aspect ratio kept, centred into a ``size`` square.

    Returns:
        ``(size, size)`` float32 coverage in [0, 1]; all zeros when the font draws no ink.
    """
    left, top, right, bottom = font.getbbox(char)
    pad = 4
    img = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(img).text((pad - left, pad - top), char, fill=255, font=font)
    box = img.getbbox()
    out = Image.new("L", (size, size), 0)
    if box is None:
        return np.zeros((size, size), np.float32)
    img = img.crop(box)
    w, h = img.size
    k = size / max(w, h)
    w2, h2 = max(1, round(w * k)), max(1, round(h * k))
    out.paste(img.resize((w2, h2), Image.Resampling.LANCZOS), ((size - w2) // 2, (size - h2) // 2))
    return np.asarray(out, np.float32) / 255.0


def _neighbours(img: np.ndarray) -> list[np.ndarray]:
    """P2..P9 of Zhang-Suen (N, NE, E, SE, S, SW, W, NW) for every pixel of ``(B, H, W)`` uint8."""
    p = np.pad(img, ((0, 0), (1, 1), (1, 1)))
    h, w = img.shape[1:]

    def at(dy: int, dx: int) -> np.ndarray:
        return p[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    return [at(-1, 0), at(-1, 1), at(0, 1), at(1, 1), at(1, 0), at(1, -1), at(0, -1), at(-1, -1)]


def thin(mask: np.ndarray) -> np.ndarray:
    """Zhang-Suen thinning of a batch of binary images to one-pixel-wide skeletons.

    Args:
        mask: ``(B, H, W)`` or ``(H, W)`` bool, True on ink.

    Returns:
        The skeletons, same shape, bool.
    """
    squeeze = mask.ndim == 2
    img = (mask[None] if squeeze else mask).astype(np.uint8)
    changed = True
    while changed:
        changed = False
        for step in (0, 1):
            n = _neighbours(img)
            count = sum(n)
            ring = [*n, n[0]]
            transitions = sum((ring[i] == 0) & (ring[i + 1] == 1) for i in range(8))
            p2, p4, p6, p8 = n[0], n[2], n[4], n[6]
            if step == 0:
                cond = (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                cond = (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            remove = (img == 1) & (count >= 2) & (count <= 6) & (transitions == 1) & cond
            if remove.any():
                img = img & ~remove
                changed = True
    out = img.astype(bool)
    return out[0] if squeeze else out


def skeletonize(mask: np.ndarray) -> np.ndarray:
    """:func:`thin`, plus one pixel for every ink component that thinning erased entirely.

    Zhang-Suen deletes small blobs such as a 2x2 square; a letter's dots must survive, so each
    component left without skeleton keeps its pixel nearest to the component's centroid.

    Args:
        mask: ``(B, H, W)`` bool.

    Returns:
        ``(B, H, W)`` bool skeletons with as many 8-connected components as ``mask``.
    """
    skel = thin(mask)
    eight = np.zeros((3, 3, 3), bool)
    eight[1] = True  # 8-connected within an image, never across the batch
    ndimage = _ndimage()
    labels, n = ndimage.label(mask, eight)
    if n == 0:
        return skel
    kept = ndimage.sum(skel, labels, np.arange(1, n + 1))
    for comp in np.flatnonzero(kept == 0) + 1:
        b, ys, xs = np.nonzero(labels == comp)
        i = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
        skel[b[i], ys[i], xs[i]] = True
    return skel


def skeleton_points(skeleton: np.ndarray) -> np.ndarray:
    """Points along a skeleton: pixel centres plus the midpoint of every 8-connected pixel pair.

    Args:
        skeleton: ``(H, W)`` bool.

    Returns:
        ``(P, 2)`` float32 ``(x, y)`` in [-1, 1] (the canvas spans [-1, 1] on both axes).
    """
    h, w = skeleton.shape
    ys, xs = np.nonzero(skeleton)
    pts = [np.stack([xs, ys], 1).astype(np.float32)]
    pad = np.pad(skeleton, 1)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        other = pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        yy, xx = np.nonzero(skeleton & other)
        pts.append(np.stack([xx + dx / 2, yy + dy / 2], 1).astype(np.float32))
    p = np.concatenate(pts)
    return (p + 0.5) / np.array([w, h], np.float32) * 2 - 1


def sample_warps(rng: np.random.Generator, n: int, style: StrokeStyle) -> dict[str, np.ndarray]:
    """Draw ``n`` random distortions.

    Returns:
        ``matrix`` ``(n, 2, 2)``, ``shift`` ``(n, 2)``, ``freq`` ``(n, M, 2)`` (radians per unit),
        ``phase`` ``(n, M, 2)``, ``amp`` ``(n, M, 2)`` and ``pen`` ``(n,)``, for M elastic modes.
    """

    def u(lo: float, hi: float, *shape: int) -> np.ndarray:
        return rng.uniform(lo, hi, shape)

    angle = u(-style.rotation, style.rotation, n)
    shear = u(-style.shear, style.shear, n)
    scale = u(*style.scale, n)
    log_aspect = u(-style.aspect, style.aspect, n)
    sx, sy = scale * np.exp(log_aspect / 2), scale * np.exp(-log_aspect / 2)
    c, s = np.cos(angle), np.sin(angle)
    rot = np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)
    shr = np.zeros((n, 2, 2))
    shr[:, 0, 0], shr[:, 0, 1], shr[:, 1, 1] = 1.0, shear, 1.0
    diag = np.zeros((n, 2, 2))
    diag[:, 0, 0], diag[:, 1, 1] = sx, sy
    m = style.elastic_modes
    direction = u(0, 2 * np.pi, n, m)
    cycles = u(*style.elastic_freq, n, m) * np.pi  # one canvas side spans 2 units
    return {
        "matrix": rot @ shr @ diag * style.extent,
        "shift": u(-style.shift, style.shift, n, 2) * 2,
        "freq": np.stack([np.cos(direction), np.sin(direction)], -1) * cycles[..., None],
        "phase": u(0, 2 * np.pi, n, m, 2),
        "amp": u(-style.elastic, style.elastic, n, m, 2) * 2,
        "pen": u(*style.pen, n),
    }


def warp_points(points: np.ndarray, warps: dict[str, np.ndarray]) -> np.ndarray:
    """Apply each distortion of :func:`sample_warps` to ``points`` ``(P, 2)``.

    Returns:
        ``(n, P, 2)``: ``q = M p + t`` followed by ``q + sum_m amp_m * sin(freq_m . q + phase_m)``.
    """
    q = np.einsum("nij,pj->npi", warps["matrix"], points) + warps["shift"][:, None]
    arg = np.einsum("npd,nmd->npm", q, warps["freq"])
    disp = np.sin(arg[..., None] + warps["phase"][:, None]) * warps["amp"][:, None]
    return (q + disp.sum(2)).astype(np.float32)


def keep_on_canvas(points: np.ndarray, pen: np.ndarray, size: int) -> np.ndarray:
    """Move, and if need be shrink, each point cloud so its pen strokes stay off the border pixel.

    Args:
        points: ``(n, P, 2)`` in [-1, 1] canvas coordinates.
        pen: ``(n,)`` pen radii.
        size: output side in pixels.

    Returns:
        ``(n, P, 2)``: clouds already inside ``|p| <= 1 - 2 * pen - 3 / size`` are unchanged
        (canvas coordinates span 2 units: one output pixel is ``2 / size``, the pen reaches
        ``2 * pen``, anti-aliasing and rounding up to another half pixel).
    """
    limit = (1 - 2 * pen - 3 / size)[:, None]  # (n, 1)
    lo, hi = points.min(1), points.max(1)  # (n, 2)
    centre, half = (lo + hi) / 2, (hi - lo) / 2
    shrink = np.minimum(1.0, limit[:, 0] / np.maximum(half.max(1), 1e-9))[:, None]  # (n, 1)
    room = limit - half * shrink
    new_centre = np.clip(centre, -room, room)
    return ((points - centre[:, None]) * shrink[:, None] + new_centre[:, None]).astype(np.float32)


def draw_points(points: np.ndarray, pen: np.ndarray, size: int, supersample: int = 2) -> np.ndarray:
    """Draw each point cloud with a round pen of radius ``pen`` (fraction of the canvas side).

    Args:
        points: ``(n, P, 2)`` ``(x, y)`` in [-1, 1]; points off the canvas are dropped.
        pen: ``(n,)`` pen radii.
        size: output side in pixels.
        supersample: drawing happens at ``size * supersample`` and is box-filtered down.

    Returns:
        ``(n, size, size)`` uint8 ink (0 = paper, 255 = full ink).
    """
    n = points.shape[0]
    big = size * supersample
    pix = np.floor((points + 1) / 2 * big).astype(np.int64)
    inside = ((pix >= 0) & (pix < big)).all(-1)
    out = np.zeros((n, big, big), np.float32)
    for b in range(n):
        x, y = pix[b, inside[b], 0], pix[b, inside[b], 1]
        if x.size == 0:
            continue
        paper = np.ones((big, big), bool)
        paper[y, x] = False
        dist = _ndimage().distance_transform_edt(paper)
        out[b] = np.clip(pen[b] * big + 0.5 - dist, 0.0, 1.0)
    out = out.reshape(n, size, supersample, size, supersample).mean((2, 4))
    return np.round(out * 255).astype(np.uint8)


def render_samples(
    skeleton: np.ndarray, n: int, *, size: int, rng: np.random.Generator, style: StrokeStyle
) -> np.ndarray:
    """``n`` handwriting-like samples of one letter from its ``(H, W)`` skeleton.

    Returns:
        ``(n, size, size)`` uint8.
    """
    warps = sample_warps(rng, n, style)
    points = keep_on_canvas(warp_points(skeleton_points(skeleton), warps), warps["pen"], size)
    return draw_points(points, warps["pen"], size)


def _ndimage():
    return require("scipy.ndimage", extra="data", purpose="glyph rendering")
