"""Render the glyph dataset once into a cached .npz (deterministic from --seed).

    python scripts/render_glyphs.py                     # 28x28 -> ~/.cache/metacompose/glyphs-28px-seed0.npz
    python scripts/render_glyphs.py --size 105          # the 105x105 variant
    python scripts/render_glyphs.py --grid docs/glyph_samples.png   # also write a sample grid

Needs Debian's Noto fonts: ``apt-get install -y fonts-noto-core``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image

from metacompose.cli.parser import OneLineParser
from metacompose.cli.script_errors import run_script
from metacompose.tasks.glyph_dataset import (
    NOTO_DIR,
    GlyphDataset,
    default_glyph_path,
    render_glyph_dataset,
)


def sample_grid(
    data: GlyphDataset, *, n_scripts: int, letters: int, samples: int, seed: int
) -> Image.Image:
    """Rows of ``letters`` letters from ``n_scripts`` random scripts, ``samples`` drawings each."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(data.scripts), size=min(n_scripts, len(data.scripts)), replace=False)
    w = data.images.shape[-1]
    rows = []
    for s in sorted(picks):
        cls = np.flatnonzero(data.class_script == s)[:letters]
        tiles = [data.images[c, :samples] for c in cls]
        row = np.concatenate([np.concatenate(list(t), 1) for t in tiles], 1)
        row = np.pad(row, ((2, 2), (0, letters * samples * w - row.shape[1])))
        rows.append(row)
    grid = 255 - np.concatenate(rows, 0)
    for j in range(1, letters):  # a grey rule between letters
        grid[:, j * samples * w] = 160
    return Image.fromarray(grid)


def main() -> None:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default: $METACOMPOSE_CACHE/glyphs-{size}px-seed{seed}.npz",
    )
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples", type=int, default=20, help="drawings per letter")
    p.add_argument("--max-per-script", type=int, default=12, help="letters kept per script")
    p.add_argument("--font-dir", type=Path, default=NOTO_DIR)
    p.add_argument("--grid", type=Path, default=None, help="also write a PNG grid of samples here")
    a = p.parse_args()
    for flag, value, least in (("--size", a.size, 8), ("--samples", a.samples, 1),
                               ("--max-per-script", a.max_per_script, 1)):  # fmt: skip
        if value < least:
            p.error(f"argument {flag}: {value}: must be >= {least}")
    out = a.out or default_glyph_path(size=a.size, seed=a.seed)
    t0 = time.perf_counter()
    try:
        data = render_glyph_dataset(
            font_dir=a.font_dir,
            samples_per_class=a.samples,
            max_per_script=a.max_per_script,
            size=a.size,
            seed=a.seed,
        )
    except FileNotFoundError as e:  # the fonts are a system package, not a pip one
        p.exit(
            2,
            f"{p.prog}: error: {e} (install Debian's Noto fonts: apt-get install -y "
            "fonts-noto-core, or point --font-dir at a folder holding them)\n",
        )
    t1 = time.perf_counter()
    data.save(out)
    c, s, h, w = data.images.shape
    print(f"{len(data.scripts)} scripts, {c} letters x {s} samples of {h}x{w}")
    print(
        f"render {t1 - t0:.1f} s, save {time.perf_counter() - t1:.1f} s -> {out} ({out.stat().st_size / 1e6:.1f} MB)"
    )
    if a.grid is not None:
        sample_grid(data, n_scripts=16, letters=4, samples=6, seed=a.seed).resize(
            (4 * 6 * w * 2, 16 * (h + 4) * 2), Image.Resampling.NEAREST
        ).save(a.grid)
        print(f"grid -> {a.grid}")


if __name__ == "__main__":
    run_script(main)
