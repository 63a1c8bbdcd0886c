"""The wheel installs one import package, ``metacompose``, with every source folder inside it."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import metacompose

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {
    "composer": "metacompose",
    "modules": "metacompose/modules",
    "symbolic": "metacompose/symbolic",
}


def test_wheel_has_one_top_level_name_and_every_module(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("metacompose-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"metacompose"}
    expected = {
        f"{FOLDERS[folder]}/{p.relative_to(ROOT / folder).as_posix()}"
        for folder in FOLDERS
        for p in (ROOT / folder).rglob("*.py")
    }
    assert expected <= set(names), sorted(expected - set(names))[:5]
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry).decode()
    assert "metacompose = metacompose.cli.main:main" in text


def test_public_names_resolve():
    assert sorted(metacompose.__all__) == sorted(metacompose._EXPORTS)
    for name in metacompose.__all__:
        assert getattr(metacompose, name).__name__ == name
