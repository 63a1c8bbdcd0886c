"""The writing systems the glyph renderer draws letters from, and the Noto font that draws each.

A :class:`ScriptSpec` names a script, the font file (from Debian's ``fonts-noto-core``) and the
Unicode-name prefixes that pick its letters (``"ARMENIAN CAPITAL LETTER"``). Only alphabets,
abjads, abugidas and syllabaries are listed. Left out on purpose, because they are pictographic or
logographic (or have no letters in ``fonts-noto-core``): CJK ideographs, Tangut, Nushu, Yi,
Egyptian / Anatolian / Meroitic hieroglyphs, Cuneiform, Linear A, SignWriting, emoji and symbol
fonts, Mayan and Siyaq numerals. Where a script has several Noto fonts (Sans/Serif, the Tifinagh
and Arabic variants) one is kept, so that one script is one "alphabet" as in Omniglot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ScriptSpec:
    """One writing system.

    Args:
        name: the script's name (an "alphabet" of the dataset).
        font: font file name inside the font directory.
        prefixes: a codepoint is a letter of this script when its Unicode name starts with one of
            these prefixes (followed by a space).
        first: optional first codepoint of an allowed range (e.g. ``0x41`` for A-Z).
        last: optional last codepoint of that range (inclusive).
    """

    name: str
    font: str
    prefixes: tuple[str, ...]
    first: int = 0
    last: int = 0x10FFFF


def _s(name: str, font: str | None = None, *prefixes: str) -> ScriptSpec:
    """Shorthand: font ``NotoSans<Name>-Regular.ttf`` and prefix ``"<NAME> LETTER"`` by default."""
    stem = name.replace(" ", "").replace("-", "")
    font = font or f"NotoSans{stem}-Regular.ttf"
    return ScriptSpec(name=name, font=font, prefixes=prefixes or (f"{name.upper()} LETTER",))


_SANS = "NotoSans-Regular.ttf"
_SERIF = "NotoSerif{}-Regular.ttf"

SCRIPTS: tuple[ScriptSpec, ...] = (
    ScriptSpec("Latin", _SANS, ("LATIN CAPITAL LETTER",), 0x41, 0x5A),
    ScriptSpec("Greek", _SANS, ("GREEK CAPITAL LETTER",), 0x391, 0x3A9),
    ScriptSpec("Cyrillic", _SANS, ("CYRILLIC CAPITAL LETTER",), 0x410, 0x42F),
    _s("Adlam", None, "ADLAM CAPITAL LETTER"),
    _s("Arabic", None, "ARABIC LETTER"),
    _s("Armenian", None, "ARMENIAN CAPITAL LETTER"),
    _s("Avestan"),
    _s("Balinese"),
    ScriptSpec("Bamum", "NotoSansBamum-Regular.ttf", ("BAMUM LETTER",), 0xA6A0, 0xA6FF),
    _s("Bassa Vah"),
    _s("Batak"),
    _s("Bengali"),
    _s("Bhaiksuki"),
    _s("Brahmi"),
    _s("Buginese"),
    _s("Buhid"),
    _s("Canadian Aboriginal", None, "CANADIAN SYLLABICS"),
    _s("Carian"),
    _s("Caucasian Albanian"),
    _s("Chakma"),
    _s("Cham"),
    _s("Cherokee", None, "CHEROKEE LETTER"),
    _s("Coptic", None, "COPTIC CAPITAL LETTER"),
    _s("Cypriot", None, "CYPRIOT SYLLABLE"),
    _s("Deseret", None, "DESERET CAPITAL LETTER"),
    _s("Devanagari"),
    _s("Duployan"),
    _s("Elbasan"),
    _s("Elymaic"),
    _s("Ethiopic", None, "ETHIOPIC SYLLABLE"),
    _s("Georgian"),
    _s("Glagolitic", None, "GLAGOLITIC CAPITAL LETTER"),
    _s("Gothic"),
    _s("Grantha"),
    _s("Gujarati"),
    _s("Gunjala Gondi"),
    _s("Gurmukhi"),
    _s("Hanifi Rohingya"),
    _s("Hanunoo"),
    _s("Hatran"),
    _s("Hebrew"),
    _s("Imperial Aramaic"),
    _s("Inscriptional Pahlavi"),
    _s("Inscriptional Parthian"),
    _s("Javanese"),
    _s("Kaithi"),
    _s("Kannada"),
    _s("Kayah Li"),
    _s("Kharoshthi"),
    _s("Khmer", None, "KHMER LETTER", "KHMER INDEPENDENT VOWEL"),
    _s("Khojki"),
    _s("Khudawadi"),
    _s("Lao"),
    _s("Lepcha"),
    _s("Limbu"),
    _s("Linear B", None, "LINEAR B SYLLABLE"),
    _s("Lisu"),
    _s("Lycian"),
    _s("Lydian"),
    _s("Mahajani"),
    _s("Malayalam"),
    _s("Mandaic"),
    _s("Manichaean"),
    _s("Marchen"),
    _s("Masaram Gondi"),
    _s("Medefaidrin", None, "MEDEFAIDRIN CAPITAL LETTER"),
    _s("Meetei Mayek"),
    _s("Mende Kikakui", None, "MENDE KIKAKUI SYLLABLE"),
    _s("Meroitic Cursive", "NotoSansMeroitic-Regular.ttf"),
    _s("Miao"),
    _s("Modi"),
    _s("Mongolian"),
    _s("Mro"),
    _s("Multani"),
    _s("Myanmar"),
    _s("NKo"),
    _s("Nabataean"),
    _s("New Tai Lue"),
    _s("Newa"),
    _s("Ogham"),
    _s("Ol Chiki"),
    _s("Old Hungarian", None, "OLD HUNGARIAN CAPITAL LETTER"),
    _s("Old Italic"),
    _s("Old North Arabian"),
    _s("Old Permic"),
    _s("Old Persian", None, "OLD PERSIAN SIGN"),
    _s("Old Sogdian"),
    _s("Old South Arabian"),
    _s("Old Turkic"),
    _s("Oriya"),
    _s("Osage", None, "OSAGE CAPITAL LETTER"),
    _s("Osmanya"),
    _s("Pahawh Hmong", None, "PAHAWH HMONG VOWEL", "PAHAWH HMONG CONSONANT"),
    _s("Palmyrene"),
    _s("Pau Cin Hau"),
    _s("Phags-pa", "NotoSansPhagsPa-Regular.ttf", "PHAGS-PA LETTER"),
    _s("Phoenician"),
    _s("Psalter Pahlavi"),
    _s("Rejang"),
    _s("Runic"),
    _s("Samaritan"),
    _s("Saurashtra"),
    _s("Sharada"),
    _s("Shavian"),
    _s("Siddham"),
    _s("Sinhala"),
    _s("Sogdian"),
    _s("Sora Sompeng"),
    _s("Soyombo"),
    _s("Sundanese"),
    _s("Syloti Nagri"),
    _s("Syriac"),
    _s("Tagalog"),
    _s("Tagbanwa"),
    _s("Tai Le"),
    _s("Tai Tham", None, "TAI THAM LETTER"),
    _s("Tai Viet"),
    _s("Takri"),
    _s("Tamil"),
    _s("Telugu"),
    _s("Thaana"),
    _s("Thai", None, "THAI CHARACTER"),
    _s("Tifinagh"),
    _s("Tirhuta"),
    _s("Ugaritic"),
    _s("Vai", None, "VAI SYLLABLE"),
    _s("Wancho"),
    _s("Warang Citi", None, "WARANG CITI CAPITAL LETTER"),
    _s("Zanabazar Square"),
    _s("Ahom", _SERIF.format("Ahom")),
    _s("Dogra", _SERIF.format("Dogra")),
    _s("Nyiakeng Puachue Hmong", _SERIF.format("NyiakengPuachueHmong")),
    _s("Tibetan", _SERIF.format("Tibetan")),
    _s("Yezidi", _SERIF.format("Yezidi")),
)
