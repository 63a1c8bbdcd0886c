"""A small glyph dataset drawn with matplotlib's bundled DejaVu Sans (no apt fonts needed)."""

from pathlib import Path

import matplotlib

from metacompose.tasks.glyph_scripts import ScriptSpec

DEJAVU_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
_F = "DejaVuSans.ttf"
DEJAVU_SCRIPTS = (
    ScriptSpec("Latin", _F, ("LATIN CAPITAL LETTER",), 0x41, 0x5A),
    ScriptSpec("Greek", _F, ("GREEK CAPITAL LETTER",), 0x391, 0x3A9),
    ScriptSpec("Cyrillic", _F, ("CYRILLIC CAPITAL LETTER",), 0x410, 0x42F),
    ScriptSpec("Armenian", _F, ("ARMENIAN CAPITAL LETTER",)),
    ScriptSpec("Georgian", _F, ("GEORGIAN CAPITAL LETTER",)),
    ScriptSpec("Hebrew", _F, ("HEBREW LETTER",)),
)
