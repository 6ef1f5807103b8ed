"""Multi-platform images: one package run makes an OCI index of amd64 and arm64 images, the arm64 one from the
base's arm64 variant and aarch64 wheels (nothing emulated at build time); run under qemu it scores the same."""

from __future__ import annotations

import gzip
import json
import tarfile
import uuid

import pytest

from edgepack.oci.layout import read_layout, read_layout_index

from tests.project import expected, make_model, make_project, run_cli

pytestmark = pytest.mark.integration
ELF_MACHINE = {"linux/amd64": 0x3E, "linux/arm64": 0xB7}  # e_machine: x86-64, AArch64
SCORE = ("import json, platform\n"
         "from edgepack.runtime.scoring import load_runtime\n"
         "r = load_runtime()\n"
         "answer = r.score(json.dumps({'data': [[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, 1.0, 1.0]]}).encode(), "
         "'application/json')\n"
         "print(json.dumps({'machine': platform.machine(), 'status': answer.status, "
         "'body': json.loads(answer.body)}))\n")


@pytest.fixture
def layout(tmp_path, edgepack_home, capsys, base_image_ref):
    config = make_project(tmp_path / "proj")
    model = make_model(tmp_path / "model.onnx", seed=61)
    assert run_cli(["model", "register", "m", str(model)], capsys)[0] == 0
    out = tmp_path / "layout"
    code, stdout, err = run_cli(["package", "--model", "m", "--inference-config", str(config), "--target",
                                 "webservice", "--base-image", base_image_ref, "--platform", "linux/amd64,linux/arm64",
                                 "--output", str(out), "--json"], capsys)
    assert code == 0, err
    return out, json.loads(stdout), model


# Under qemu user emulation /proc/cpuinfo still describes the x86 host, and onnxruntime's CPU probe (cpuinfo) on
# aarch64 crashes on it (a segfault at import, or a hang). A real arm64 device has its own; the test gives the
# container an aarch64 one (a Neoverse N1, the commonest arm64 server core).
ARM64_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

"""


def _elf_machines(image, prefix: str) -> set[int]:
    """e_machine of every shared object under ``prefix`` in the image's layers."""
    machines = set()
    for desc in image.layers:
        with tarfile.open(fileobj=gzip.open(image.blob_path(desc.digest)), mode="r|") as tar:
            for member in tar:
                if member.isfile() and member.name.lstrip("./").startswith(prefix) and ".so" in member.name:
                    head = tar.extractfile(member).read(20)
                    if head[:4] == b"\x7fELF":
                        machines.add(int.from_bytes(head[18:20], "little"))
    return machines


def test_one_index_lists_amd64_and_arm64_each_with_its_own_wheels(layout):
    out, result, _ = layout
    index = read_layout_index(out)
    assert index is not None and index.manifest_digest == result["digest"]
    assert [m["platform"] for m in json.loads(index.manifest)["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}]
    assert {p: i.manifest_digest for p, i in index.images.items()} == result["platforms"]
    for platform, image in index.images.items():
        config = json.loads(image.blob_path(image.config.digest).read_bytes())
        assert config["architecture"] == platform.split("/")[1]
        assert _elf_machines(image, "opt/edgepack/site-packages/onnxruntime") == {ELF_MACHINE[platform]}
    amd, arm = index.images["linux/amd64"], index.images["linux/arm64"]
    shared = {d.digest for d in amd.layers} & {d.digest for d in arm.layers}
    assert len(shared) >= 3  # runtime, source and model layers are the same bytes for both


def test_the_arm64_image_run_under_qemu_scores_what_the_amd64_one_does(layout, docker_daemon, tmp_path):
    out, _, model = layout
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(ARM64_CPUINFO)
    answers = {}
    for platform in ("linux/amd64", "linux/arm64"):
        tag = f"edgepack-test/multi-{platform.split('/')[1]}:{uuid.uuid4().hex[:8]}"
        docker_daemon.load_layout(out, tag, platform=platform)
        volumes = {str(cpuinfo): {"bind": "/proc/cpuinfo", "mode": "ro"}} if platform == "linux/arm64" else {}
        text = docker_daemon.client.containers.run(tag, ["python3", "-c", SCORE], remove=True, entrypoint=[],
                                                   volumes=volumes)
        answers[platform] = json.loads(text.decode().strip().splitlines()[-1])
        docker_daemon.client.images.remove(tag, force=True)
    assert answers["linux/amd64"]["machine"] == "x86_64" and answers["linux/arm64"]["machine"] == "aarch64"
    rows = [[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, 1.0, 1.0]]
    want = expected(model, rows)
    flat = lambda rows: [v for row in rows for v in row]  # noqa: E731
    for answer in answers.values():
        assert answer["status"] == 200
        assert flat(answer["body"]["result"]) == pytest.approx(flat(want), rel=1e-5)
    assert flat(answers["linux/arm64"]["body"]["result"]) == pytest.approx(
        flat(answers["linux/amd64"]["body"]["result"]), rel=1e-6)


def test_an_index_is_pushed_after_its_images_and_pushed_again_from_the_layout(layout, dev_registry, capsys):
    import urllib.request

    out, result, _ = layout
    repo = f"{dev_registry}/edgepack-test/multi-{uuid.uuid4().hex[:8]}"
    code, stdout, err = run_cli(["push", str(out), "--to", f"{repo}:1", "--json"], capsys)
    assert code == 0, err
    assert json.loads(stdout)["ref"] == f"{repo}@{result['digest']}"
    name = repo.split("/", 1)[1]
    request = urllib.request.Request(f"http://{dev_registry}/v2/{name}/manifests/1",
                                     headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    with urllib.request.urlopen(request) as response:
        assert response.headers["Docker-Content-Digest"] == result["digest"]
    for digest in result["platforms"].values():
        head = urllib.request.Request(f"http://{dev_registry}/v2/{name}/manifests/{digest}", method="HEAD",
                                      headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        with urllib.request.urlopen(head) as response:
            assert response.status == 200
    assert read_layout(out, "linux/arm64").manifest_digest == result["platforms"]["linux/arm64"]


def test_bad_platforms_are_named(tmp_path, edgepack_home, capsys, dev_env):
    config = make_project(tmp_path / "proj")
    assert run_cli(["model", "register", "m", str(make_model(tmp_path / "m.onnx", seed=1))], capsys)[0] == 0
    code, _, err = run_cli(["package", "--model", "m", "--inference-config", str(config), "--target", "webservice",
                            "--platform", "linux/s390x", "--output", str(tmp_path / "o")], capsys)
    assert code == 2 and "linux/s390x" in err and "linux/amd64, linux/arm64" in err
    single = dev_env["EDGEPACK_DEV_BASE_IMAGE"] + "-amd64"  # one platform only
    code, _, err = run_cli(["package", "--model", "m", "--inference-config", str(config), "--target", "webservice",
                            "--base-image", single,
                            "--platform", "linux/amd64,linux/arm64", "--output", str(tmp_path / "o")], capsys)
    assert code != 0 and "is for linux/amd64 only" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_each_platform_has_its_own_sbom_and_provenance(layout, capsys):
    out, result, _ = layout
    for platform, digest in result["platforms"].items():
        code, text, err = run_cli(["provenance", str(out), "--platform", platform], capsys)
        assert code == 0, err
        statement = json.loads(text)
        assert "sha256:" + statement["subject"][0]["digest"]["sha256"] == digest
        assert statement["predicate"]["buildDefinition"]["externalParameters"]["platform"] == platform
        code, text, err = run_cli(["sbom", str(out), "--platform", platform], capsys)
        assert code == 0, err
        arch = platform.split("/")[1]
        debs = [c for c in json.loads(text)["components"] if c.get("purl", "").startswith("pkg:deb/")]
        assert debs and {c["purl"].rsplit("arch=", 1)[1] for c in debs} <= {arch, "all"}
    code, _, err = run_cli(["sbom", str(out)], capsys)
    assert code == 1 and "multi-platform" in err and "--platform" in err
