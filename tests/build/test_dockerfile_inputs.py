"""A Dockerfile context never changes the user's own files (modes, contents), whatever the image wants."""

from __future__ import annotations

import os
import stat

from edgepack.build.dockerfile import write_context
from edgepack.oci.layer import FileEntry, LayerSpec
from edgepack.oci.plan import ImagePlan


def test_the_context_leaves_input_files_as_they_were(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    key, tool, plain = src / "id_key", src / "tool", src / "score.py"
    key.write_text("secret")
    tool.write_text("#!/bin/sh\n")
    plain.write_text("def run(x): return x\n")
    os.chmod(key, 0o600)
    os.chmod(tool, 0o4750)
    os.chmod(plain, 0o644)
    before = {p: (stat.S_IMODE(p.stat().st_mode), p.read_bytes(), p.stat().st_ino) for p in (key, tool, plain)}
    spec = LayerSpec("source", tuple(FileEntry.from_file(f"/app/src/{p.name}", p) for p in (key, tool, plain)))
    context = write_context(tmp_path / "ctx", ImagePlan(target="webservice", base_image="b:1", layers=(spec,)),
                            "b:1@sha256:" + "0" * 64, [spec])
    after = {p: (stat.S_IMODE(p.stat().st_mode), p.read_bytes(), p.stat().st_ino) for p in before}
    assert after == before
    copied = {p.name: stat.S_IMODE(p.stat().st_mode) for p in context.rglob("*") if p.is_file()
              and p.name in ("id_key", "tool", "score.py")}
    assert copied == {"id_key": 0o644, "tool": 0o755, "score.py": 0o644}
