"""Deterministic layers: same entries, same bytes; sorted entries, fixed owners and mtimes."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import platform
import shutil
import subprocess
import sys
import tarfile

import pytest

from edgepack.oci.layer import FileEntry, LayerSpec, entries_from_dir, write_layer


def _write(spec: LayerSpec, mtime: int = 0) -> tuple[bytes, object]:
    buf = io.BytesIO()
    written = write_layer(spec, buf, mtime=mtime)
    return buf.getvalue(), written


def test_same_entries_in_any_order_give_identical_bytes(tmp_path):
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "a.bin").write_bytes(b"\x00" * 100)
    one = LayerSpec("x", (FileEntry.from_file("/app/b.txt", tmp_path / "b.txt"),
                          FileEntry.from_bytes("/app/sub/a.json", b"{}")))
    two = LayerSpec("x", tuple(reversed(one.entries)))
    data1, w1 = _write(one)
    data2, w2 = _write(two)
    assert data1 == data2
    assert w1 == w2
    assert w1.digest == "sha256:" + hashlib.sha256(data1).hexdigest()
    assert w1.size == len(data1)
    assert w1.diff_id == "sha256:" + hashlib.sha256(gzip.decompress(data1)).hexdigest()
    assert one.key(0) == two.key(0) != one.key(1)


def test_tar_members_are_sorted_owned_by_root_with_fixed_mtime(tmp_path):
    src = tmp_path / "run.sh"
    src.write_text("#!/bin/sh\n")
    src.chmod(0o775)
    spec = LayerSpec("x", (FileEntry.from_bytes("/z/last.txt", b"z"), FileEntry.from_file("/a/run.sh", src)))
    data, _ = _write(spec, mtime=1_700_000_000)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a", "z", "a/run.sh", "z/last.txt"]
    assert {(m.uid, m.gid, m.uname, m.gname, m.mtime) for m in members} == {(0, 0, "", "", 1_700_000_000)}
    assert {m.name: oct(m.mode) for m in members}["a/run.sh"] == oct(0o755)
    assert {m.name: oct(m.mode) for m in members}["z/last.txt"] == oct(0o644)


def test_changing_mtime_or_content_changes_digest(tmp_path):
    spec = LayerSpec("x", (FileEntry.from_bytes("/f", b"one"),))
    _, base = _write(spec)
    _, later = _write(spec, mtime=5)
    _, other = _write(LayerSpec("x", (FileEntry.from_bytes("/f", b"two"),)))
    assert len({base.digest, later.digest, other.digest}) == 3


def test_entries_from_dir_skips_symlinks(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "mod.py").write_text("x = 1\n")
    (tmp_path / "link.py").symlink_to("/etc/passwd")
    entries = entries_from_dir(tmp_path, "/opt/site")
    assert [e.dest for e in entries] == ["/opt/site/pkg/mod.py"]
    assert entries[0].sha256 == hashlib.sha256(b"x = 1\n").hexdigest()


_LAYER_DIGEST = """
import io, random, struct, sys
from edgepack.oci.layer import FileEntry, LayerSpec, write_layer
r = random.Random(7)
data = r.randbytes(1 << 19) + b"text of a layer " * 20000 + b"".join(struct.pack("<f", r.gauss(0, 0.05))
                                                                     for _ in range(60000))
spec = LayerSpec("x", (FileEntry.from_bytes("/app/model.onnx", data), FileEntry.from_bytes("/app/a.txt", b"a")))
print(write_layer(spec, io.BytesIO(), mtime=0).digest)
"""


@pytest.mark.parametrize("cpu", ["Nehalem", "Haswell"])
def test_layer_bytes_do_not_depend_on_the_cpu(cpu):
    """The same layer from this CPU and, under qemu, from an SSE4.2-only one and an AVX2 one (ISA-L picks its
    code by CPU feature; the output must not change with it)."""
    qemu = shutil.which("qemu-x86_64-static")
    if qemu is None or platform.machine() != "x86_64":
        pytest.skip("needs qemu-x86_64-static on an x86-64 host")
    python = os.path.realpath(sys.executable)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    here = subprocess.run([python, "-c", _LAYER_DIGEST], capture_output=True, text=True, env=env, check=True)
    there = subprocess.run([qemu, "-cpu", cpu, python, "-c", _LAYER_DIGEST], capture_output=True, text=True,
                           env=env, timeout=600)
    assert there.returncode == 0, there.stderr[-2000:]
    assert there.stdout.strip() == here.stdout.strip()
    assert here.stdout.startswith("sha256:")
