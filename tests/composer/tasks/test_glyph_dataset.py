import unicodedata

import numpy as np
import pytest
from glyph_testing import DEJAVU_DIR, DEJAVU_SCRIPTS

from metacompose.tasks.glyph_dataset import (
    NOTO_DIR,
    GlyphDataset,
    _font_codepoints,
    default_glyph_path,
    render_glyph_dataset,
    select_letters,
)
from metacompose.tasks.glyph_scripts import SCRIPTS


def render(scripts=DEJAVU_SCRIPTS[:3], seed=0, **kw):
    kw = {"samples_per_class": 6, "max_per_script": 5, **kw}
    return render_glyph_dataset(scripts=scripts, font_dir=DEJAVU_DIR, seed=seed, **kw)


def test_render_is_deterministic_for_a_seed():
    a, b, c = render(seed=3), render(seed=3), render(seed=4)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.codepoints, c.codepoints)
    assert not np.array_equal(a.images, c.images)
    assert a.images.shape == (15, 6, 28, 28) and a.images.dtype == np.uint8
    assert a.scripts == ("Latin", "Greek", "Cyrillic")
    np.testing.assert_array_equal(a.class_script, np.repeat([0, 1, 2], 5))


def test_letter_renders_do_not_depend_on_other_scripts():
    both = render(scripts=(DEJAVU_SCRIPTS[1], DEJAVU_SCRIPTS[0]))
    alone = render(scripts=(DEJAVU_SCRIPTS[0],))
    np.testing.assert_array_equal(both.images[both.class_script == 1], alone.images)


def test_samples_vary_but_stay_on_canvas():
    d = render(size=28)
    flat = d.images.reshape(*d.images.shape[:2], -1).astype(float)
    assert (flat.max(-1) >= 200).all()  # every sample has a solid stroke somewhere
    ink = (flat > 127).mean(-1)
    assert (ink > 0.02).all() and (ink < 0.5).all()
    assert np.abs(np.diff(flat, axis=1)).sum(-1).min() > 0  # no two consecutive samples equal
    edge = d.images[..., [0, -1], :].max(), d.images[..., :, [0, -1]].max()
    assert max(edge) < 255  # the letter is not cut by the border


def test_size_105():
    d = render(scripts=DEJAVU_SCRIPTS[:1], size=105, samples_per_class=2, max_per_script=2)
    assert d.images.shape == (2, 2, 105, 105)


def test_select_letters_from_the_font_without_duplicates():
    spec = DEJAVU_SCRIPTS[2]  # Cyrillic capitals А..Я
    cps, masks = select_letters(spec, font_dir=DEJAVU_DIR, max_letters=12, work_size=32)
    assert len(cps) == 12 and masks.shape == (12, 32, 32)
    have = _font_codepoints(DEJAVU_DIR / spec.font)
    for cp in cps:
        assert cp in have and 0x410 <= cp <= 0x42F
        assert unicodedata.name(chr(cp)).startswith("CYRILLIC CAPITAL LETTER ")
    for i in range(12):
        for j in range(i):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            assert iou < 0.9


def test_save_load_roundtrip(tmp_path):
    d = render()
    d.save(tmp_path / "g.npz")
    e = GlyphDataset.load(tmp_path / "g.npz")
    np.testing.assert_array_equal(d.images, e.images)
    np.testing.assert_array_equal(d.class_script, e.class_script)
    np.testing.assert_array_equal(d.codepoints, e.codepoints)
    assert (e.scripts, e.seed) == (d.scripts, d.seed)
    with pytest.raises(FileNotFoundError, match=r"render_glyphs\.py"):
        GlyphDataset.load(tmp_path / "missing.npz")


def test_default_path_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("METACOMPOSE_CACHE", str(tmp_path))
    assert default_glyph_path(size=105, seed=2) == tmp_path / "glyphs-105px-seed2.npz"


def test_missing_font_is_named():
    with pytest.raises(FileNotFoundError, match="NotoSansLatin"):
        render(scripts=(SCRIPTS[0].__class__("X", "NotoSansLatin.ttf", ("LATIN",)),))


PICTOGRAPHIC = (
    "CJK",
    "HIEROGLYPH",
    "CUNEIFORM",
    "TANGUT",
    "NUSHU",
    "YI ",
    "SIGNWRITING",
    "LINEAR A",
    "EMOJI",
)


def test_catalogue_has_no_pictographic_scripts():
    names = {s.name for s in SCRIPTS}
    assert len(names) == len(SCRIPTS) >= 100
    for s in SCRIPTS:
        assert not any(p in q for q in s.prefixes for p in PICTOGRAPHIC), s


@pytest.mark.skipif(not NOTO_DIR.exists(), reason="needs Debian's fonts-noto-core (optional)")
def test_noto_catalogue_fonts_exist_and_render():
    missing = [s.font for s in SCRIPTS if not (NOTO_DIR / s.font).exists()]
    assert not missing
    some = tuple(s for s in SCRIPTS if s.name in ("Latin", "Devanagari", "Ethiopic", "Arabic"))
    d = render_glyph_dataset(scripts=some, samples_per_class=3, max_per_script=12, seed=0)
    assert d.images.shape == (48, 3, 28, 28)


def test_rendering_shows_a_bar_over_the_scripts_on_stderr(capsys, monkeypatch):
    monkeypatch.setenv("METACOMPOSE_PROGRESS", "1")
    shown = render(scripts=DEJAVU_SCRIPTS[:2], samples_per_class=2, max_per_script=2)
    out, err = capsys.readouterr()
    assert "render glyphs" in err and "/2 " in err and out == ""
    monkeypatch.setenv("METACOMPOSE_PROGRESS", "0")
    plain = render(scripts=DEJAVU_SCRIPTS[:2], samples_per_class=2, max_per_script=2)
    assert capsys.readouterr().err == ""
    np.testing.assert_array_equal(shown.images, plain.images)
