"""Omniglot-style few-shot classification on letters rendered from Noto fonts.

The closest honest substitute for Omniglot that can be installed here: letters of about 130 writing
systems, each letter one class, drawn with handwriting-like variation by
:mod:`metacompose.tasks.glyph_render`. Scripts (alphabets), not letters, are split between
meta-train / meta-val / meta-test, as Omniglot splits alphabets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from metacompose.modules.space import Space
from metacompose.tasks.base import SPLITS
from metacompose.tasks.episodes import EpisodeFamily
from metacompose.tasks.glyph_dataset import GlyphDataset, default_glyph_path
from metacompose.tasks.splits import split_indices


class GlyphFamily(EpisodeFamily):
    """N-way few-shot episodes over rendered glyphs; the scripts of each split are disjoint.

    Args:
        path: the ``.npz`` written by ``scripts/render_glyphs.py``; default
            ``$METACOMPOSE_CACHE/glyphs-{size}px-seed{seed}.npz`` (``~/.cache/metacompose``).
        size: image side of the default file (28 or 105).
        seed: render seed of the default file.
        ways: classes per episode (N).
        split_seed: seed of the script split.
        fractions: fractions of the scripts in meta-train, meta-val and meta-test.
        rotate_train: add a random multiple of 90 degrees rotation per class in meta-train
            episodes (Omniglot's usual augmentation); never applied to val/test.
    """

    def __init__(
        self,
        *,
        path: str | Path | None = None,
        size: int = 28,
        seed: int = 0,
        ways: int = 5,
        split_seed: int = 0,
        fractions: tuple[float, float, float] = (0.6, 0.15, 0.25),
        rotate_train: bool = False,
    ) -> None:
        data = GlyphDataset.load(
            path if path is not None else default_glyph_path(size=size, seed=seed)
        )
        c, s, h, w = data.images.shape
        self.name = f"glyphs-{ways}way"
        self.in_space = Space("image", (1, h, w))
        self.out_dim = ways
        self.ways = ways
        self.rotate_train = rotate_train
        self.scripts = data.scripts
        self.images = torch.from_numpy(data.images).view(c, s, 1, h, w)
        self.codepoints = torch.from_numpy(data.codepoints)
        script_split = split_indices(len(data.scripts), fractions=tuple(fractions), seed=split_seed)
        self.split_scripts = {k: [data.scripts[i] for i in v] for k, v in script_split.items()}
        self.classes = {
            k: torch.from_numpy(np.flatnonzero(np.isin(data.class_script, v)))
            for k, v in script_split.items()
        }
        for k in SPLITS:
            if len(self.classes[k]) < ways:
                raise ValueError(
                    f"glyph split {k!r} has {len(self.classes[k])} classes, fewer than ways={ways}"
                )
        self.splits = {k: (self.images, self.classes[k]) for k in SPLITS}
