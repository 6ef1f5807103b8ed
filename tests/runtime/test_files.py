"""Atomic writes: the target holds the old content or the new, and nothing is left behind on failure."""

from __future__ import annotations

import os
import stat

import pytest

from edgepack.runtime.files import staged_file, write_atomic


def test_write_atomic_replaces_content_and_sets_mode_before_it_appears(tmp_path):
    target = tmp_path / "keys.json"
    target.write_text("old")
    write_atomic(target, '{"k": 1}', mode=0o600, fsync=True)
    assert target.read_text() == '{"k": 1}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["keys.json"]


def test_a_failure_midway_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with staged_file(tmp_path) as (f, tmp):
            f.write(b"half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_staged_file_moved_into_place_is_kept(tmp_path):
    with staged_file(tmp_path / "new") as (f, tmp):
        f.write(b"data")
        f.close()
        os.replace(tmp, tmp_path / "new" / "blob")
    assert (tmp_path / "new" / "blob").read_bytes() == b"data"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == ["blob"]
