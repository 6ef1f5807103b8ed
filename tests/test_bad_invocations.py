"""Acceptance check: a user's bad invocations of the installed ``edgepack`` command fail cleanly.

Each row of ``CASES`` is run as a real subprocess of the installed CLI, in a workspace of its own under tmp_path:

    WS/proj      a copy of samples/digits plus bad inputs (configs, layouts, arrays); the case's input files
    WS/home      EDGEPACK_HOME, a copy of a home where samples/digits/model/model.onnx is registered as digits:1
    WS/cwd       the (empty) working directory
    WS/userhome  HOME
    WS/tmp       TMPDIR

and must: exit non-zero (2 for usage errors, 1 for edgepack's errors), print no Python traceback (neither the word
nor ``File "...", line N`` frames), name the problem on stderr the way the CLI does (``Error:`` from click;
``error:`` and ``hint:`` lines from edgepack), leave every input file's bytes and mode as they were, and create
nothing in WS outside EDGEPACK_HOME and TMPDIR (run names such as ``../../victim`` resolve to WS/victim).

The invocations run once per module, a few at a time (a CLI start costs most of a second), and each is reported
as its own test. A failure is raised as a subclass of ``InvocationFailure`` naming what went wrong, so a known
product bug is marked ``xfail(strict=True, raises=<that kind>)``: any other failure of the same row still fails.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "digits"
CLI = Path(sys.executable).with_name("edgepack")
TIMEOUT = 60  # seconds per invocation; each should take about one CLI start
WORKERS = min(8, (os.cpu_count() or 2) + 1)  # CLI starts wait on the disk part of the time
DIGEST = "sha256:" + "a" * 64
_FRAME = re.compile(r'File "[^"\n]+", line \d+')
# Workspace entries that the invocation may change; everything else in WS must stay as it was.
_WRITABLE = ("home", "tmp")


# --- what can go wrong, one type each, so an xfail can name the one it expects ---------------------------------

class InvocationFailure(AssertionError):
    """A bad invocation did not fail cleanly."""


class TimedOut(InvocationFailure):
    """The invocation did not finish in time."""


class TracebackShown(InvocationFailure):
    """stdout or stderr holds a Python traceback (or frames of one)."""


class WrongExitCode(InvocationFailure):
    """The exit code is not the one for this kind of error."""


class UnclearMessage(InvocationFailure):
    """stderr does not say ``error:``/``hint:`` (or click's ``Error:``), or does not name the problem."""


class InputChanged(InvocationFailure):
    """An input file's bytes or mode changed, or an input file disappeared."""


class WroteOutside(InvocationFailure):
    """A file appeared outside EDGEPACK_HOME and TMPDIR."""


# --- the table -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """One bad invocation: arguments (with @PROJ@, @WS@, @REG@, @BASE_DIGEST@ filled in per workspace), the exit
    code it must end with, a piece of text stderr must contain, extra environment, and marks (xfail for bugs)."""

    id: str
    args: tuple[str, ...]
    code: int
    needle: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    marks: tuple[Any, ...] = ()
    cleanup: tuple[str, ...] = ()  # an invocation run afterwards whatever happened (stops what a case may start)


def bug(kind: type[InvocationFailure], reason: str) -> Any:
    return pytest.mark.xfail(strict=True, raises=kind, reason=reason)


def c(id: str, *args: str, code: int = 1, needle: str | None = None, env: dict[str, str] | None = None,
      marks: tuple[Any, ...] = (), cleanup: tuple[str, ...] = ()) -> Case:
    return Case(id, tuple(args), code, needle, dict(env or {}), marks, cleanup)


CONFIG = "@PROJ@/inferenceconfig.json"
ABSENT_IMAGE = f"@REG@/edgepack-tests/absent@{DIGEST}"
BASE_BY_DIGEST = "@REG@/edgepack/python@@BASE_DIGEST@"
PLAN = ("plan", "--model", "digits:1", "--target", "webservice", "--inference-config")
# fails at the latest when it looks for this (absent) base image on the loopback registry: nothing is built
PACKAGE = ("package", "--model", "digits:1", "--inference-config", CONFIG, "--target", "webservice",
           "--base-image", "@REG@/edgepack-tests/absent:1")
ROLLOUT = ("fleet", "rollout", "--name", "r1", "--model", f"@REG@/models/absent@{DIGEST}", "--dry-run", "--local")
PROFILE = ("profile", "--model", "digits:1", "--inference-config", CONFIG)
QUANTIZE = ("fpga", "quantize", "--model", "digits:1")
EVALUATE = ("fpga", "evaluate", "--model", "digits:1", "--quantized", "digits:1")
K8S = ("deploy", "k8s", "--name", "n")
FUNCTIONAPP = ("deploy", "functionapp", "--subscription", "s", "--resource-group", "g", "--name", "n", "--plan", "p",
               "--dry-run")
IOT_EDGE = ("deploy", "iot-edge", "--image", ABSENT_IMAGE)

CASES = [
    # unknown options and commands
    c("top-unknown-option", "--bogus", code=2, needle="No such option"),
    c("model-list-unknown-option", "model", "list", "--bogus", code=2, needle="No such option"),
    # model register
    c("register-name-superscript", "model", "register", "digits:\u00b2", "@PROJ@/model/model.onnx",
      needle="invalid model name"),
    c("register-name-newline", "model", "register", "digits\n", "@PROJ@/model/model.onnx",
      needle="invalid model name"),
    c("register-name-traversal", "model", "register", "../../victim", "@PROJ@/model/model.onnx",
      needle="invalid model name"),
    c("register-missing-file", "model", "register", "digits", "@PROJ@/nope.onnx", needle="does not exist"),
    c("register-empty-folder", "model", "register", "digits", "@PROJ@/bad/empty-dir", needle="has no files"),
    c("register-invalid-onnx", "model", "register", "digits", "@PROJ@/bad/bad.onnx",
      needle="checking onnx model 'bad.onnx'"),
    # model show / download / delete
    c("show-version-superscript", "model", "show", "digits:\u00b2", needle="version must be a positive integer"),
    c("download-dest-existing-file", "model", "download", "digits:1", "@PROJ@/README.md",
      needle="the destination exists"),
    c("download-dest-unwritable", "model", "download", "digits:1", "/proc/edgepack-cannot-write-here",
      needle="/proc/edgepack-cannot-write-here"),
    c("download-dest-empty", "model", "download", "digits:1", "", code=2, needle="is empty"),
    c("delete-name-traversal", "model", "delete", "../models", needle="invalid model name"),
    # model push / pull
    c("model-push-to-digest", "model", "push", "digits:1", "--to", f"@REG@/m@{DIGEST}",
      needle="a digest names content"),
    c("model-pull-not-a-model", "model", "pull", "@REG@/edgepack/python:3.11-bookworm",
      needle="not an edgepack model"),
    # plan: options, configs, targets
    c("plan-missing-target", "plan", "--model", "digits:1", "--inference-config", CONFIG, code=2,
      needle="Missing option '--target'"),
    c("plan-config-missing", *PLAN, "@PROJ@/nope.json", needle="no such file"),
    c("plan-config-is-folder", *PLAN, "@PROJ@/src", needle="no such file"),
    c("plan-config-malformed-json", *PLAN, "@PROJ@/bad/truncated.json", needle="is not valid JSON"),
    c("plan-config-malformed-yaml", *PLAN, "@PROJ@/bad/malformed.yml", needle="is not valid YAML"),
    c("plan-config-not-mapping", *PLAN, "@PROJ@/bad/list.json", needle="must be a mapping"),
    c("plan-config-key-typo", *PLAN, "@PROJ@/bad/typo.json", needle="did you mean 'entryScript'"),
    c("plan-config-unsupported-features", *PLAN, "@PROJ@/bad/unsupported.json", needle="not supported"),
    c("plan-config-yaml-python-tag", *PLAN, "@PROJ@/bad/pytag.yml", needle="could not determine a constructor"),
    c("plan-config-bad-conda-file", *PLAN, "@PROJ@/bad/conda.json", needle="condaFile"),
    c("plan-config-deeply-nested-json", *PLAN, "@PROJ@/bad/deep.json", needle="deep.json"),
    c("plan-config-deeply-nested-yaml", *PLAN, "@PROJ@/bad/deep.yml", needle="deep.yml"),
    c("plan-conda-file-deeply-nested", *PLAN, "@PROJ@/bad/deep-conda.json", needle="condaFile"),
    c("plan-entry-script-deeply-nested", *PLAN, "@PROJ@/bad/deep-entry.json", needle="entryScript"),
    c("plan-v2-deployment-wrong-shapes", *PLAN, "@PROJ@/bad/deployment.yml", needle="code_configuration"),
    c("plan-blob-uncaptured-name", "plan", "--model", "digits:1", "--inference-config", CONFIG, "--target",
      "functions-blob", "--input-path", "input/{a}.json", "--output-path", "output/{b}.json",
      needle="is not captured"),
    # package: options checked before anything is built
    c("package-missing-inference-config", "package", "--model", "digits:1", "--target", "webservice", code=2,
      needle="Missing option '--inference-config'"),
    c("package-bad-target", "package", "--inference-config", CONFIG, "--target", "k8s", code=2,
      needle="'k8s' is not one of"),
    c("package-platform-windows", *PACKAGE, "--platform", "windows/amd64", code=2, needle="windows/amd64"),
    c("package-tag-non-ascii", *PACKAGE, "--tag", "@REG@/r:t\u00e9", "--push", needle="invalid tag"),
    c("package-tag-with-digest", *PACKAGE, "--tag", f"@REG@/r:1@{DIGEST}", "--push",
      needle="names a tag, not a digest"),
    c("package-dockerfile-context-two-platforms", *PACKAGE, "--platform", "linux/amd64,linux/arm64",
      "--dockerfile-context", "@WS@/ctx", needle="--dockerfile-context"),
    c("package-epoch-abc", *PACKAGE, env={"SOURCE_DATE_EPOCH": "abc"}, needle="SOURCE_DATE_EPOCH 'abc'"),
    c("package-epoch-negative", *PACKAGE, env={"SOURCE_DATE_EPOCH": "-1"}, needle="SOURCE_DATE_EPOCH '-1'"),
    c("package-epoch-too-large", *PACKAGE, env={"SOURCE_DATE_EPOCH": "99999999999999"},
      needle="SOURCE_DATE_EPOCH '99999999999999'"),
    # --output is checked when the layout is written, after the build: here the (absent) base stops it first,
    # and what is checked is that the file named is left as it was
    c("package-output-existing-file", *PACKAGE, "--output", "@PROJ@/sample-request.json", needle="absent"),
    c("package-output-unwritable", *PACKAGE, "--output", "/proc/edgepack-cannot-write-here", needle="absent"),
    # sbom, provenance, verify: images without records, folders that are not layouts
    c("sbom-not-a-layout", "sbom", "@PROJ@", needle="not an OCI image layout"),
    c("sbom-missing-folder", "sbom", "@PROJ@/nope", needle="no such folder"),
    c("provenance-image-without-records", "provenance", BASE_BY_DIGEST, needle="the image has none"),
    c("provenance-absent-image", "provenance", ABSENT_IMAGE, needle="manifest unknown"),
    c("verify-malformed-layout", "verify", "@PROJ@/bad/layout-malformed-index", needle="reading image layout"),
    c("verify-bad-reference", "verify", "::bad", needle="invalid repository name"),
    # push: OCI layouts that are not
    c("push-layout-missing", "push", "@PROJ@/nope", "--to", "@REG@/x:1", needle="reading image layout"),
    c("push-layout-is-file", "push", CONFIG, "--to", "@REG@/x:1", code=2, needle="is a file"),
    c("push-layout-malformed-index", "push", "@PROJ@/bad/layout-malformed-index", "--to", "@REG@/x:1",
      needle="reading image layout"),
    c("push-layout-missing-blob", "push", "@PROJ@/bad/layout-missing-blob", "--to", "@REG@/x:1",
      needle="reading image layout"),
    c("push-layout-manifest-is-list", "push", "@PROJ@/bad/layout-manifest-list", "--to", "@REG@/x:1",
      needle="reading image layout"),
    c("push-layout-manifest-without-config", "push", "@PROJ@/bad/layout-no-config", "--to", "@REG@/x:1",
      needle="reading image layout"),
    c("push-layout-index-entry-not-object", "push", "@PROJ@/bad/layout-index-entry", "--to", "@REG@/x:1",
      needle="reading image layout"),
    # run / keys / logs / stop: names that are not container names, sources that are not images
    c("run-name-traversal", "run", "@PROJ@/bad/empty-dir", "--name", "../../victim", needle="not a container name"),
    c("run-name-slash", "run", "@PROJ@/bad/empty-dir", "--name", "a/b", needle="not a container name"),
    c("run-name-empty", "run", "@PROJ@/bad/empty-dir", "--name", "", needle="not a container name"),
    c("run-env-not-pair", "run", "@PROJ@/bad/empty-dir", "--env", "NOEQUALS", code=2, needle="expected K=V"),
    c("run-layout-manifest-without-config", "run", "@PROJ@/bad/layout-no-config", needle="reading image layout"),
    c("keys-regenerate-name-traversal", "keys", "../../victim", "--regenerate", "primary",
      needle="not a container name"),
    c("keys-name-empty", "keys", "", needle="not a container name"),
    c("keys-name-newline", "keys", "ok\n", "--regenerate", "primary", needle="not a container name"),
    c("logs-name-empty", "logs", "", needle="container"),
    c("logs-tail-not-number", "logs", "ok", "--tail", "many", code=2, needle="--tail"),
    c("stop-name-traversal", "stop", "../../victim", needle="not a container name"),
    # profile
    c("profile-sample-missing", *PROFILE, "--sample", "@PROJ@/nope.json", needle="reading sample"),
    c("profile-concurrency-zero", *PROFILE, "--sample", "@PROJ@/sample-request.json", "--concurrency", "0", code=2,
      needle="--concurrency"),
    c("profile-seconds-negative", *PROFILE, "--sample", "@PROJ@/sample-request.json", "--seconds", "-1",
      "--concurrency", "1", code=2, needle="--seconds"),
    c("profile-sample-refused", *PROFILE, "--sample", "@PROJ@/bad/refused-request.json", "--concurrency", "1",
      "--seconds", "0.5", needle="answered 400"),
    # deploy k8s / functionapp / iot-edge
    c("k8s-image-without-digest", *K8S, "--image", "@REG@/x:1", needle="a tag without a digest"),
    c("k8s-min-replicas-negative", *K8S, "--image", ABSENT_IMAGE, "--min-replicas", "-1", code=2,
      needle="--min-replicas"),
    c("k8s-accelerator-count-zero", *K8S, "--image", ABSENT_IMAGE, "--accelerator-resource", "amd.com/x=0", code=2,
      needle="COUNT must be a positive number"),
    c("k8s-not-an-edgepack-image", *K8S, "--image", BASE_BY_DIGEST, needle="not an edgepack"),
    c("functionapp-image-without-digest", *FUNCTIONAPP, "--image", "@REG@/x:1", needle="a tag without a digest"),
    c("functionapp-password-env-unset", *FUNCTIONAPP, "--image", ABSENT_IMAGE, "--registry-username", "u",
      "--registry-password-env", "EDGEPACK_TEST_UNSET", code=2, needle="'EDGEPACK_TEST_UNSET' is not set"),
    c("iot-edge-no-device-nor-condition", *IOT_EDGE, code=2, needle="--device"),
    c("iot-edge-condition-without-name", *IOT_EDGE, "--target-condition", "tags.site='lyon'", code=2,
      needle="needs a name"),
    # edge: no hub runs in a fresh home
    c("edge-hub-status-not-running", "edge", "hub", "status", needle="no local hub is running"),
    c("edge-hub-start-port-out-of-range", "edge", "hub", "start", "--device-port", "99999", "--service-port",
      "99998", "--no-modules", code=2, needle="99999", cleanup=("edge", "hub", "stop")),
    c("edge-send-malformed-json", "edge", "send", "--device", "d", "--module", "m", "@PROJ@/bad/malformed.jsonl",
      code=2, needle="not JSON"),
    c("edge-send-missing-file", "edge", "send", "--device", "d", "--module", "m", "@PROJ@/nope.jsonl", code=2,
      needle="No such file"),
    c("edge-twin-desired-not-object", "edge", "twin", "d", "--desired", "[1]", code=2, needle="a JSON object"),
    c("edge-method-payload-malformed", "edge", "method", "d", "m", "reboot", "{bad", code=2, needle="not JSON"),
    # fpga
    c("fpga-quantize-unknown-profile", *QUANTIZE, "--calibration", "@PROJ@/bad/calibration.npy", "--profile",
      "nope", needle="no such profile"),
    c("fpga-quantize-wrong-shape", *QUANTIZE, "--calibration", "@PROJ@/bad/wrong-shape.npy",
      needle="has shape Nx64"),
    c("fpga-quantize-not-numpy", *QUANTIZE, "--calibration", "@PROJ@/bad/not-numpy.npy", needle="not-numpy.npy"),
    c("fpga-quantize-jsonl-refused", *QUANTIZE, "--calibration", "@PROJ@/bad/refused-requests.jsonl",
      "--inference-config", CONFIG, needle="answered 400"),
    c("fpga-report-float-model", "fpga", "report", "--model", "digits:1", needle="not quantized"),
    c("fpga-evaluate-no-labels", *EVALUATE, "--data", "@PROJ@/bad/calibration.npy", needle="no labels"),
    # fleet
    c("fleet-model-without-digest", "fleet", "rollout", "--name", "r1", "--model", "@REG@/models/digits:1",
      "--dry-run", needle="a tag without a digest"),
    c("fleet-wave-start-zero", *ROLLOUT, "--wave", "start=0", needle="--wave"),
    c("fleet-wave-factor-nan", *ROLLOUT, "--wave", "factor=nan", needle="--wave"),
    c("fleet-wave-factor-inf", *ROLLOUT, "--wave", "factor=inf", needle="--wave"),
    c("fleet-gate-infinite", *ROLLOUT, "--gate", "p99_ms<1e999", needle="a finite number"),
    c("fleet-poll-negative", *ROLLOUT, "--poll", "-1", code=2, needle="--poll"),
    c("fleet-gate-unknown-metric", *ROLLOUT, "--gate", "nonsense>1", needle="expected one of"),
    c("fleet-abort-over-100-percent", *ROLLOUT, "--abort", "failed>200%", needle="below 100%"),
    c("fleet-soak-not-duration", *ROLLOUT, "--soak", "5x", needle="not a duration"),
    c("fleet-rings-and-condition", *ROLLOUT, "--rings", "canary,all", "--target-condition", "tags.x='y'", code=2,
      needle="not both"),
    c("fleet-name-traversal", "fleet", "rollout", "--name", "../../victim", "--model", f"@REG@/m@{DIGEST}",
      "--dry-run", needle="not a valid name"),
    c("fleet-status-unknown", "fleet", "status", "nope", needle="no such rollout"),
    c("fleet-status-name-newline", "fleet", "status", "nope\n", needle="not a valid name"),
    c("fleet-resume-name-empty", "fleet", "resume", "", needle="not a valid name"),
    c("fleet-abort-unknown", "fleet", "abort", "nope", needle="no such rollout"),
]


# --- the inputs ----------------------------------------------------------------------------------------------

def _layout(folder: Path, manifest: bytes | None, media_type: str = "application/vnd.oci.image.manifest.v1+json",
            digest: str | None = None) -> None:
    """An OCI layout whose index names one manifest (``manifest``'s bytes, or a missing blob)."""
    blobs = folder / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    if manifest is not None:
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        (blobs / digest.split(":")[1]).write_bytes(manifest)
    size = len(manifest or b"")
    (folder / "index.json").write_text('{"schemaVersion": 2, "manifests": [{"mediaType": "%s", "digest": "%s", '
                                       '"size": %d}]}' % (media_type, digest, size))
    (folder / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')


def _make_project(proj: Path) -> None:
    """samples/digits and, under bad/, the inputs of the invocations (each mistake one file or folder)."""
    import numpy as np

    shutil.copytree(SAMPLE, proj, ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "src" / "score.py").chmod(0o640)  # modes other than the defaults, so a changed mode shows
    (proj / "model" / "model.onnx").chmod(0o444)
    bad = proj / "bad"
    bad.mkdir()
    (bad / "empty-dir").mkdir()
    (bad / "bad.onnx").write_bytes(b"\x00not a model at all")
    (bad / "truncated.json").write_text('{"entryScript": ')
    (bad / "malformed.yml").write_text("entryScript: [score.py\n sourceDirectory: }\n")
    (bad / "list.json").write_text("[1, 2]\n")
    (bad / "typo.json").write_text('{"entryScirpt": "score.py", "sourceDirectory": "../src"}')
    (bad / "unsupported.json").write_text('{"entryScript": "score.py", "sourceDirectory": "../src", '
                                          '"extraDockerfileSteps": "RUN make", "enableGpu": true}')
    (bad / "pytag.yml").write_text('entryScript: !!python/object/apply:os.system ["touch PWNED"]\n')
    (bad / "conda-bad.yml").write_text("dependencies:\n  - python=3.11\n  - pip:\n    - [numpy\n")
    (bad / "conda.json").write_text('{"entryScript": "score.py", "sourceDirectory": "../src", '
                                    '"condaFile": "conda-bad.yml"}')
    (bad / "deep.json").write_text("[" * 2000 + "]" * 2000)
    (bad / "deep.yml").write_text("entryScript: " + "[" * 2000 + "]" * 2000 + "\n")
    (bad / "conda-deep.yml").write_text("dependencies: " + "[" * 2000 + "]" * 2000 + "\n")
    (bad / "deep-conda.json").write_text('{"entryScript": "score.py", "sourceDirectory": "../src", '
                                         '"condaFile": "conda-deep.yml"}')
    (bad / "deep-entry-src").mkdir()
    (bad / "deep-entry-src" / "score.py").write_text("def init():\n    pass\n\n\ndef run(data):\n    return " +
                                                     "+".join(["1"] * 5000) + "\n")
    (bad / "deep-entry.json").write_text('{"entryScript": "score.py", "sourceDirectory": "deep-entry-src"}')
    (bad / "deployment.yml").write_text("name: blue\nendpoint_name: ep\nmodel: 12\ncode_configuration: x\n"
                                        "environment: [1]\ninstance_type: Standard_DS3_v2\n")
    (bad / "refused-request.json").write_text('{"x": 1}\n')  # valid JSON the config's inputSample refuses
    (bad / "refused-requests.jsonl").write_text('{"x": 1}\n')
    (bad / "malformed.jsonl").write_text('{"data": [1]}\nnot json\n')
    np.save(bad / "calibration.npy", np.zeros((4, 64), dtype=np.float32))
    np.save(bad / "wrong-shape.npy", np.zeros((3, 5), dtype=np.float32))
    (bad / "not-numpy.npy").write_text("not numpy\n")
    (bad / "layout-malformed-index").mkdir()
    (bad / "layout-malformed-index" / "index.json").write_text("{")
    _layout(bad / "layout-missing-blob", None, digest=DIGEST)
    _layout(bad / "layout-manifest-list", b"[1]")
    _layout(bad / "layout-no-config", b'{"schemaVersion": 2, "mediaType": '
                                      b'"application/vnd.oci.image.manifest.v1+json", "layers": []}')
    _layout(bad / "layout-index-entry", b'{"schemaVersion": 2, "mediaType": '
                                        b'"application/vnd.oci.image.index.v1+json", "manifests": [1]}',
            media_type="application/vnd.oci.image.index.v1+json")


def _environ(ws: Path, extra: dict[str, str]) -> dict[str, str]:
    """A small environment: this machine's PATH, certificates and engine address, and the workspace's places."""
    keep = ("PATH", "LANG", "LC_ALL", "SSL_CERT_FILE", "SSL_CERT_DIR", "DOCKER_HOST", "PIP_CERT", "PIP_FIND_LINKS",
            "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_DISABLE_PIP_VERSION_CHECK")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    env.update(HOME=str(ws / "userhome"), TMPDIR=str(ws / "tmp"), EDGEPACK_HOME=str(ws / "home"), **extra)
    return env


def _snapshot(ws: Path) -> dict[str, tuple]:
    """Every path of WS outside the writable entries: kind and mode, and for files their bytes' digest and mtime."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(ws):
        here = Path(dirpath)
        if here == ws:
            dirnames[:] = [d for d in dirnames if d not in _WRITABLE]
            filenames = [f for f in filenames if f not in _WRITABLE]
        for name in dirnames + filenames:
            path = here / name
            info = path.lstat()
            rel = str(path.relative_to(ws))
            if stat.S_ISREG(info.st_mode):
                out[rel] = ("file", info.st_mode, hashlib.sha256(path.read_bytes()).hexdigest(), info.st_mtime_ns)
            elif stat.S_ISLNK(info.st_mode):
                out[rel] = ("link", info.st_mode, os.readlink(path))
            else:
                out[rel] = ("dir" if stat.S_ISDIR(info.st_mode) else "other", info.st_mode)
    return out


@dataclass
class Outcome:
    code: int | None
    out: str
    err: str
    seconds: float
    changed: list[str]
    removed: list[str]
    added: list[str]
    command: list[str]


def _fill(arg: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        arg = arg.replace(key, value)
    return arg


def _invoke(case: Case, ws: Path, values: dict[str, str]) -> Outcome:
    command = [str(CLI), *(_fill(a, values) for a in case.args)]
    env = _environ(ws, case.env)
    before = _snapshot(ws)
    start = time.monotonic()
    try:
        proc = subprocess.run(command, cwd=ws / "cwd", env=env, capture_output=True, timeout=TIMEOUT,
                              stdin=subprocess.DEVNULL)
        code, out, err = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        code, out, err = None, exc.stdout or b"", exc.stderr or b""
    seconds = time.monotonic() - start
    if case.cleanup:
        subprocess.run([str(CLI), *case.cleanup], cwd=ws / "cwd", env=env, capture_output=True, timeout=TIMEOUT)
    after = _snapshot(ws)
    return Outcome(code=code, out=out.decode(errors="replace"), err=err.decode(errors="replace"), seconds=seconds,
                   changed=sorted(p for p in before if p in after and before[p] != after[p]),
                   removed=sorted(p for p in before if p not in after),
                   added=sorted(p for p in after if p not in before), command=command)


def _base_digest(base_image_ref: str) -> str:
    """The digest of the base image (an index on the loopback registry), for an image that edgepack did not make."""
    registry, _, rest = base_image_ref.partition("/")
    repository, _, tag = rest.rpartition(":")
    request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}", method="HEAD", headers={
        "Accept": ", ".join(["application/vnd.oci.image.index.v1+json",
                             "application/vnd.docker.distribution.manifest.list.v2+json",
                             "application/vnd.oci.image.manifest.v1+json",
                             "application/vnd.docker.distribution.manifest.v2+json"])})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.headers["Docker-Content-Digest"]


def _selected(request: pytest.FixtureRequest) -> list[Case]:
    """The cases of this session's selection (all of them unless -k or node ids chose fewer)."""
    chosen = {item.callspec.params["case"].id for item in request.session.items
              if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params}
    return [case for case in CASES if case.id in chosen]


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory, dev_registry, base_image_ref) -> dict[str, Outcome]:
    """Run the selected invocations, a few at a time, each in its own workspace; their outcomes by case id."""
    root = tmp_path_factory.mktemp("bad-invocations")
    template = root / "template"
    _make_project(template / "proj")
    template_home = template / "home"
    registered = subprocess.run([str(CLI), "model", "register", "digits", str(SAMPLE / "model" / "model.onnx")],
                                env=_environ(template, {}), cwd=template, capture_output=True, text=True,
                                timeout=TIMEOUT)
    assert registered.returncode == 0, registered.stderr
    values = {"@REG@": dev_registry, "@BASE_DIGEST@": _base_digest(base_image_ref)}

    def run(numbered: tuple[int, Case]) -> tuple[str, Outcome]:
        number, case = numbered
        ws = root / f"{number:03d}"
        shutil.copytree(template / "proj", ws / "proj", symlinks=True)
        shutil.copytree(template_home, ws / "home", symlinks=True)
        for name in ("cwd", "userhome", "tmp"):
            (ws / name).mkdir()
        return case.id, _invoke(case, ws, {**values, "@PROJ@": str(ws / "proj"), "@WS@": str(ws)})

    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        return dict(pool.map(run, enumerate(_selected(request))))


# --- the checks ----------------------------------------------------------------------------------------------

def _shell(command: list[str]) -> str:
    return " ".join(repr(a) if not a or any(ch in a for ch in " \n'\"") else a for a in command)


def _check(case: Case, result: Outcome) -> None:
    shown = (f"$ {_shell(result.command)}\nexit {result.code} after {result.seconds:.1f}s\n"
             f"--- stdout\n{result.out[-2000:]}--- stderr\n{result.err[-3000:]}")
    if result.code is None:
        raise TimedOut(f"no answer in {TIMEOUT}s\n{shown}")
    if "Traceback" in result.out + result.err or _FRAME.search(result.out + result.err):
        raise TracebackShown(shown)
    if result.code != case.code:
        raise WrongExitCode(f"expected exit {case.code}\n{shown}")
    if case.code == 2:
        if "Error: " not in result.err:
            raise UnclearMessage(f"a usage error without click's 'Error: ' line\n{shown}")
    elif not (re.search(r"^error: \S", result.err, re.M) and re.search(r"^hint: \S", result.err, re.M)):
        raise UnclearMessage(f"no 'error: ...' and 'hint: ...' lines on stderr\n{shown}")
    if case.needle is not None and case.needle not in result.err:
        raise UnclearMessage(f"stderr does not name the problem ({case.needle!r})\n{shown}")
    if result.changed or result.removed:
        raise InputChanged(f"changed: {result.changed}, removed: {result.removed}\n{shown}")
    if result.added:
        raise WroteOutside(f"new outside EDGEPACK_HOME and TMPDIR: {result.added}\n{shown}")


def test_the_table_is_large_and_its_ids_distinct():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    assert len({(case.args, tuple(sorted(case.env.items()))) for case in CASES}) == len(CASES)
    assert len(CASES) >= 90


def test_the_snapshot_sees_changed_removed_and_new_files(tmp_path):
    (tmp_path / "proj").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "proj" / name).write_text(name)
    (tmp_path / "home").mkdir()
    before = _snapshot(tmp_path)
    (tmp_path / "proj" / "a").chmod(0o600)
    (tmp_path / "proj" / "b").unlink()
    (tmp_path / "victim").write_text("x")
    (tmp_path / "home" / "allowed").write_text("x")
    after = _snapshot(tmp_path)
    assert sorted(p for p in before if p in after and before[p] != after[p]) == ["proj/a"]
    assert sorted(set(before) - set(after)) == ["proj/b"]
    assert sorted(set(after) - set(before)) == ["victim"]


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id, marks=case.marks) for case in CASES])
def test_bad_invocation(case: Case, outcomes: dict[str, Outcome]) -> None:
    _check(case, outcomes[case.id])
