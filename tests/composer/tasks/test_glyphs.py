import numpy as np
import pytest
import torch
from glyph_testing import DEJAVU_DIR, DEJAVU_SCRIPTS

from metacompose.tasks.base import SPLITS, TaskFamily
from metacompose.tasks.glyph_dataset import render_glyph_dataset
from metacompose.tasks.glyphs import GlyphFamily


@pytest.fixture(scope="module")
def glyph_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("glyphs") / "g.npz"
    render_glyph_dataset(scripts=DEJAVU_SCRIPTS, font_dir=DEJAVU_DIR, samples_per_class=8,
                         max_per_script=8, seed=0).save(path)  # fmt: skip
    return path


def test_scripts_are_split_disjointly(glyph_file):
    f = GlyphFamily(path=glyph_file, ways=5)
    assert isinstance(f, TaskFamily) and f.out_dim == 5 and f.metric == "accuracy"
    scripts = [set(f.split_scripts[s]) for s in SPLITS]
    assert set.union(*scripts) == set(f.scripts) and sum(map(len, scripts)) == len(f.scripts)
    classes = [set(f.classes[s].tolist()) for s in SPLITS]
    assert sum(map(len, classes)) == len(set.union(*classes)) == f.images.shape[0]
    other = GlyphFamily(path=glyph_file, ways=5, split_seed=1)
    assert other.split_scripts != f.split_scripts


@pytest.mark.parametrize("split", SPLITS)
def test_episodes_come_from_the_split(glyph_file, split):
    f = GlyphFamily(path=glyph_file, ways=5)
    b = f.sample(4, shots=1, query=2, generator=torch.Generator().manual_seed(0), split=split)
    assert b.support_x.shape == (4, 5, 1, 28, 28) and b.query_x.shape == (4, 10, 1, 28, 28)
    assert set(b.info["classes"].flatten().tolist()) <= set(f.classes[split].tolist())
    for t in range(4):  # every image is a stored sample of the class behind its label
        for x, y in zip(b.query_x[t], b.query_y[t]):
            stored = f.images[b.info["classes"][t, y]].float() / 255
            assert (stored == x).flatten(1).all(1).any()


def test_rotation_only_in_meta_train(glyph_file):
    f = GlyphFamily(path=glyph_file, ways=5, rotate_train=True)
    g = torch.Generator().manual_seed(0)

    def stored_as_is(b):
        hits = []
        for t in range(len(b)):
            for x, y in zip(b.support_x[t], b.support_y[t]):
                stored = f.images[b.info["classes"][t, y]].float() / 255
                hits.append(bool((stored == x).flatten(1).all(1).any()))
        return np.array(hits)

    assert not stored_as_is(f.sample(8, shots=1, query=1, generator=g, split="train")).all()
    assert stored_as_is(f.sample(8, shots=1, query=1, generator=g, split="test")).all()


def test_glyph_errors(glyph_file, tmp_path):
    with pytest.raises(ValueError, match="fewer than ways=20"):
        GlyphFamily(path=glyph_file, ways=20)
    with pytest.raises(FileNotFoundError, match=r"render_glyphs\.py"):
        GlyphFamily(path=tmp_path / "none.npz")
    with pytest.raises(ValueError, match="split must be"):
        GlyphFamily(path=glyph_file).sample(
            1, shots=1, query=1, generator=torch.Generator(), split="dev"
        )
