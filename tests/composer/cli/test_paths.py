"""Output paths are judged before any work, and judging them leaves nothing behind."""

import os

import pytest

from metacompose.cli import paths
from metacompose.cli.paths import check_output_dir, check_output_file


def test_a_folder_the_file_system_refuses_is_not_writable_whatever_the_mode_bits(tmp_path,
                                                                                 monkeypatch):  # fmt: skip
    """Where ``os.access`` says yes but no entry can be made (root in /proc), the probe says no:
    for a folder to create, a file to write, and a folder that exists."""
    target = tmp_path / "ro"
    target.mkdir()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(paths.os, "access", lambda *a, **k: True)
    monkeypatch.setattr(paths.tempfile, "mkdtemp", refuse)
    for check, path, flag in ((check_output_dir, target / "new", "--out"),
                              (check_output_file, target / "r.json", "--json"),
                              (check_output_dir, target, "--out")):  # fmt: skip
        with pytest.raises(ValueError, match=f"^{flag} {path}: {target} is not writable$"):
            check(path, flag)
    assert not (target / "new").exists() and os.listdir(target) == []


def test_judging_an_existing_folder_changes_nothing_in_it(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "kept.txt").write_text("x")
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert check_output_dir(out, "--out") == out
    assert check_output_file(out / "r.json", "--json") == out / "r.json"
    assert check_output_dir(tmp_path / "a" / "b", "--out") == tmp_path / "a" / "b"
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no probe left, no a/ made
