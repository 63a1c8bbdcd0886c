"""The rendered glyph dataset: which letters, rendering all of them once, and the cached ``.npz``."""

from __future__ import annotations

import functools
import os
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ImageFont

from metacompose.progress import track
from metacompose.tasks.glyph_render import StrokeStyle, fit_glyph, render_samples, skeletonize
from metacompose.tasks.glyph_scripts import SCRIPTS, ScriptSpec

NOTO_DIR = Path("/usr/share/fonts/truetype/noto")
_LETTER_CATEGORIES = ("Lu", "Ll", "Lo")
_FIT_PT = 96  # font size the glyph is drawn at before it is fitted


def cache_dir() -> Path:
    """``$METACOMPOSE_CACHE`` if set, else ``~/.cache/metacompose``."""
    return Path(os.environ.get("METACOMPOSE_CACHE", Path.home() / ".cache" / "metacompose"))


def default_glyph_path(*, size: int = 28, seed: int = 0) -> Path:
    return cache_dir() / f"glyphs-{size}px-seed{seed}.npz"


@dataclass
class GlyphDataset:
    """Rendered letters, one class per letter.

    Attributes:
        images: ``(C, S, H, W)`` uint8 ink (0 = paper), S samples of each of C letters.
        scripts: names of the scripts (alphabets).
        class_script: ``(C,)`` int64 index into ``scripts`` of each letter.
        codepoints: ``(C,)`` int64 Unicode codepoint of each letter.
        seed: the seed it was rendered with.
    """

    images: np.ndarray
    scripts: tuple[str, ...]
    class_script: np.ndarray
    codepoints: np.ndarray
    seed: int

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(
            tmp,
            images=self.images,
            scripts=np.array(self.scripts),
            class_script=self.class_script,
            codepoints=self.codepoints,
            seed=np.array(self.seed),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> GlyphDataset:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(
                f"glyph dataset {path} not found; render it once with "
                f"`python scripts/render_glyphs.py --out {path}`"
            )
        with np.load(path) as z:
            return cls(
                images=z["images"],
                scripts=tuple(str(s) for s in z["scripts"]),
                class_script=z["class_script"].astype(np.int64),
                codepoints=z["codepoints"].astype(np.int64),
                seed=int(z["seed"]),
            )


@functools.lru_cache(maxsize=1)
def _letter_names() -> dict[int, str]:
    """Unicode names of every letter codepoint that has no decomposition (so no accented copies)."""
    out = {}
    for cp in range(0x20, 0x20000):
        ch = chr(cp)
        if unicodedata.category(ch) in _LETTER_CATEGORIES and not unicodedata.decomposition(ch):
            out[cp] = unicodedata.name(ch, "")
    return out


def _font_codepoints(path: Path) -> set[int]:
    from fontTools.ttLib import TTFont  # matplotlib's dependency; imported lazily (slow import)

    with TTFont(path, lazy=True) as f:
        return set(f.getBestCmap())


def _spread(items: list, k: int) -> list:
    """At most ``k`` items evenly spread over ``items``, order kept."""
    if len(items) <= k:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, k).round().astype(int)]


def select_letters(
    spec: ScriptSpec, *, font_dir: Path, max_letters: int, work_size: int = 64
) -> tuple[list[int], np.ndarray]:
    """The letters of one script, as codepoints, with their fitted binary glyphs.

    Letters the font cannot draw, blank glyphs and near-duplicates (IoU >= 0.9 with a kept letter)
    are dropped; then at most ``max_letters`` are kept, evenly spread over the codepoint order.

    Returns:
        The codepoints and their ``(L, work_size, work_size)`` bool glyph masks.
    """
    path = font_dir / spec.font
    if not path.exists():
        raise FileNotFoundError(f"font {path} for script {spec.name!r} not found")
    have = _font_codepoints(path)
    prefixes = tuple(p + " " for p in spec.prefixes)
    cands = [
        cp
        for cp, name in _letter_names().items()
        if spec.first <= cp <= spec.last and cp in have and name.startswith(prefixes)
    ]
    font = ImageFont.truetype(str(path), _FIT_PT, layout_engine=ImageFont.Layout.BASIC)
    kept, masks = [], []
    for cp in _spread(cands, 2 * max_letters):
        mask = fit_glyph(font, chr(cp), work_size) > 0.5
        if mask.mean() < 0.01:
            continue
        if any((mask & m).sum() >= 0.9 * (mask | m).sum() for m in masks):
            continue
        kept.append(cp)
        masks.append(mask)
    idx = _spread(list(range(len(kept))), max_letters)
    return [kept[i] for i in idx], np.stack([masks[i] for i in idx]) if idx else np.zeros((0,))


def render_glyph_dataset(
    *,
    scripts: tuple[ScriptSpec, ...] = SCRIPTS,
    font_dir: str | Path = NOTO_DIR,
    samples_per_class: int = 20,
    max_per_script: int = 14,
    size: int = 28,
    seed: int = 0,
    style: StrokeStyle | None = None,
) -> GlyphDataset:
    """Render every letter of ``scripts`` ``samples_per_class`` times. Deterministic in ``seed``.

    Each letter draws its samples from its own generator, seeded by ``(seed, script, codepoint)``,
    so a letter's images do not depend on which other scripts are rendered.
    A progress bar over the scripts is drawn on stderr (see :mod:`metacompose.progress`).
    """
    style = style or StrokeStyle()
    work = 64 if size <= 64 else 128
    images, class_script, codepoints, names = [], [], [], []
    for spec in track(scripts, desc="render glyphs", unit="script"):
        cps, masks = select_letters(
            spec, font_dir=Path(font_dir), max_letters=max_per_script, work_size=work
        )
        if not cps:
            continue
        skeletons = skeletonize(masks)
        key = zlib.crc32(spec.name.encode())
        for cp, skel in zip(cps, skeletons):
            rng = np.random.default_rng([seed, key, cp])
            images.append(render_samples(skel, samples_per_class, size=size, rng=rng, style=style))
            class_script.append(len(names))
            codepoints.append(cp)
        names.append(spec.name)
    if not images:
        raise ValueError(f"no letters rendered from {len(scripts)} scripts in {font_dir}")
    return GlyphDataset(
        images=np.stack(images),
        scripts=tuple(names),
        class_script=np.array(class_script, np.int64),
        codepoints=np.array(codepoints, np.int64),
        seed=seed,
    )
