"""Record what Azure ML's own inference server (azmlinfsrv, azureml-inference-server-http==1.5.1) answers
to each request of each corpus case, into that case's case.json (requests[].azmlinfsrv).

For each case it:
  1. reads the case's config (v1 inference config .json/.yml, or v2 deployment .yml), finds the environment
     (condaFile / inline condaDependencies / conda_file / a Dockerfile's `RUN pip install`), and maps it to
     pip requirements (conda names and `name=ver` pins to pip; python, pip, azureml-defaults, azureml-sdk and
     azureml-inference-server-http dropped; a pin without a cp311 wheel is unpinned; every change is written
     to case.json "installed.changes");
  2. makes (or reuses) a venv under /tmp/corpus-work/venvs/<hash of the requirements> with
     azureml-inference-server-http==1.5.1 and those requirements;
  3. runs make_models.py for the case with that venv's Python (so the pickles match its scikit-learn) and
     records the versions in case.json "made_with";
  4. lays the app out as Azure does: the code folder copied to <tmp>/app/<name>, models at
     <tmp>/app/azureml-models/<name>/<version>/<file or folder>, AZUREML_MODEL_DIR pointing at
     .../<name>/<version> for one model and at .../azureml-models for several; AML_APP_ROOT=<tmp>/app for v1
     (Model.get_model_path looks in $AML_APP_ROOT/azureml-models), the code folder for v2 (where azmlinfsrv
     also finds a custom swagger<version>.json); the server's working directory is AML_APP_ROOT;
  5. starts azmlinfsrv --entry_script ... --port <free port>, bound to 127.0.0.1 only (the console script's
     run() with its DEFAULT_HOST set to 127.0.0.1, as azmlinfsrv itself always binds 0.0.0.0), waits for
     GET / to answer, sends each request to 127.0.0.1 and stores status, content type and body, then stops
     the server (SIGTERM to its own process group, SIGKILL after 15 s).

Usage: python3 record.py [CASE ...]      (needs PyYAML in the Python that runs it)
"""
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = "/tmp/corpus-work"
AZMLINFSRV = "azureml-inference-server-http==1.5.1"
DROP = {"python", "pip", "azureml-defaults", "azureml-sdk", "azureml-inference-server-http",
        "azureml-contrib-services", "setuptools", "wheel"}
CONDA_TO_PIP = {"pytorch": "torch", "py-xgboost": "xgboost", "pillow": "pillow"}
INSTALL_TIMEOUT = 1200
START_TIMEOUT = 120
REQUEST_TIMEOUT = 60
KEEP_HEADERS = ("x-ms-run-function-failed", "x-ms-server-version")
LAUNCH = ("import sys, azureml_inference_server_http.amlserver as a; a.DEFAULT_HOST = '127.0.0.1'; "
          "sys.argv[0] = 'azmlinfsrv'; a.run()")


def load(path):
    with open(path, "rb") as f:
        text = f.read()
    return json.loads(text) if path.endswith(".json") else yaml.safe_load(text)


# ------------------------------------------------------------------ config -> code, env

def resolve(case_dir, cj):
    cfg_path = os.path.join(case_dir, cj["config"])
    cfg_dir = os.path.dirname(cfg_path)
    cfg = load(cfg_path)
    env_vars, env = {}, None
    if cj["kind"] == "v1":
        src = os.path.normpath(os.path.join(cfg_dir, cfg.get("sourceDirectory") or "."))
        entry = cfg["entryScript"]
        if cfg.get("condaFile"):
            env = ("conda", os.path.join(cfg_dir, cfg["condaFile"]), None)
        environment = cfg.get("environment") or {}
        env_vars.update(environment.get("environmentVariables") or {})
        conda = (environment.get("python") or {}).get("condaDependencies")
        if env is None and conda:
            env = ("conda", cfg_path + "#environment.python.condaDependencies", conda)
    else:
        cc = cfg["code_configuration"]
        src = os.path.normpath(os.path.join(cfg_dir, cc["code"]))
        entry = cc["scoring_script"]
        environment = cfg.get("environment")
        env_vars.update(cfg.get("environment_variables") or {})
        if isinstance(environment, dict) and environment.get("conda_file"):
            env = ("conda", os.path.join(cfg_dir, environment["conda_file"]), None)
        else:
            dockerfiles = [f for f in os.listdir(case_dir) if f.endswith(".dockerfile") or f == "Dockerfile"]
            if dockerfiles:
                env = ("dockerfile", os.path.join(case_dir, dockerfiles[0]), None)
    return src, entry, env, env_vars


def _req_name(req):
    return re.split(r"[\[=<>~! ]", req, 1)[0].strip().lower()


def requirements(env, script_text):
    """Published environment -> (pip requirements, changes)."""
    reqs, changes = [], []
    if env is None:
        changes.append("no environment file: only azmlinfsrv installed")
    elif env[0] == "dockerfile":
        with open(env[1]) as f:
            for line in f:
                m = re.match(r"\s*RUN\s+pip\s+install\s+(.*)", line)
                if m:
                    reqs += [r for r in m.group(1).split() if not r.startswith("-")]
    else:
        spec = env[2] if env[2] is not None else load(env[1])
        for dep in spec.get("dependencies") or []:
            if isinstance(dep, dict):
                for p in dep.get("pip") or []:
                    p = str(p).strip()
                    if p.startswith("-"):
                        changes.append(f"pip option line dropped: {p}")
                        continue
                    reqs.append(p)
                continue
            dep = str(dep).strip()
            m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(==|=)?\s*([^=\s]*)", dep)
            name, ver = m.group(1).lower(), m.group(3)
            pipname = CONDA_TO_PIP.get(name, name)
            if name in DROP:
                if name == "python":
                    changes.append(f"conda {dep}: served on Python {sys.version.split()[0]} instead")
                continue
            ver = ver.rstrip("*").rstrip(".")
            reqs.append(f"{pipname}=={ver}" if ver else pipname)
    out = []
    for r in reqs:
        n = _req_name(r)
        if n in DROP:
            if n == "azureml-inference-server-http" and r.strip().lower() != n:
                changes.append(f"{r}: replaced by {AZMLINFSRV}")
            elif n in ("azureml-defaults", "azureml-sdk"):
                changes.append(f"{r}: not installed (azmlinfsrv is the server; azureml-core added if the script "
                               "imports it)")
            continue
        if n == "azureml-core" and r.strip().lower() != n:
            pass
        out.append(r)
    if re.search(r"^\s*(from|import)\s+azureml\.core", script_text, re.M) and "azureml-core" not in map(_req_name, out):
        out.append("azureml-core")
        changes.append("azureml-core added: the script imports azureml.core (the published env gets it through "
                       "azureml-defaults/azureml-sdk)")
    # pins without a cp311 wheel -> newest
    final = []
    for r in out:
        if re.search(r"(==|~=)", r) and not has_wheel(r):
            changes.append(f"{r}: no wheel for Python 3.11 here, installed newest {_req_name(r)} instead")
            r = re.split(r"(==|~=)", r, 1)[0]
        final.append(r)
    # scikit-learn < 1.4 wheels are built against numpy 1.x
    for r in final:
        m = re.match(r"scikit-learn==(\d+)\.(\d+)", r)
        if m and (int(m.group(1)), int(m.group(2))) < (1, 4):
            final.append("numpy<2")
            changes.append(f"numpy<2 added: {r} is built against numpy 1.x")
            break
    return final, changes


_WHEEL_CACHE = {}


def has_wheel(req):
    if req not in _WHEEL_CACHE:
        d = tempfile.mkdtemp(dir=WORK)
        try:
            r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                                "--python-version", "3.11", "-d", d, req],
                               capture_output=True, timeout=300)
            _WHEEL_CACHE[req] = r.returncode == 0
        finally:
            shutil.rmtree(d, ignore_errors=True)
    return _WHEEL_CACHE[req]


def venv_for(reqs):
    key = hashlib.sha256(json.dumps([AZMLINFSRV] + sorted(reqs)).encode()).hexdigest()[:16]
    path = os.path.join(WORK, "venvs", key)
    py = os.path.join(path, "bin", "python")
    if not os.path.exists(os.path.join(path, ".complete")):
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", path], check=True, timeout=300)
        log = os.path.join(WORK, "logs", f"pip-{key}.log")
        with open(log, "w") as f:
            subprocess.run([py, "-m", "pip", "install", AZMLINFSRV] + reqs, check=True, stdout=f,
                           stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT)
        open(os.path.join(path, ".complete"), "w").close()
    return py


def pip_versions(py, reqs):
    names = {_req_name(r) for r in reqs} | {"azureml-inference-server-http", "inference-schema"}
    out = subprocess.run([py, "-m", "pip", "list", "--format", "json"], capture_output=True, text=True, timeout=120)
    return {p["name"].lower(): p["version"] for p in json.loads(out.stdout) if p["name"].lower() in names}


# ------------------------------------------------------------------ serving

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=REQUEST_TIMEOUT):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def describe(status, headers, body):
    h = {k.lower(): v for k, v in headers.items()}
    out = {"status": status, "content_type": h.get("content-type")}
    kept = {k: h[k] for k in KEEP_HEADERS if k in h}
    if kept:
        out["headers"] = kept
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        out["base64"] = base64.b64encode(body).decode()
        out["sha256"] = hashlib.sha256(body).hexdigest()
        out["length"] = len(body)
        return out
    try:
        out["json"] = json.loads(text)
    except ValueError:
        pass
    out["text"] = text
    return out


def request_body(case_dir, r):
    if "body_file" in r:
        with open(os.path.join(case_dir, r["body_file"]), "rb") as f:
            return f.read()
    if "body_text" in r:
        return r["body_text"].encode()
    if "body" in r:
        return json.dumps(r["body"]).encode()
    return None


def record_case(name):
    case_dir = os.path.join(HERE, name)
    cj_path = os.path.join(case_dir, "case.json")
    cj = load(cj_path)
    src, entry, env, env_vars = resolve(case_dir, cj)
    with open(os.path.join(src, entry), encoding="utf-8") as f:
        script = f.read()
    reqs, changes = requirements(env, script)
    py = venv_for(reqs)
    cj["installed"] = {"python": subprocess.run([py, "-c", "import sys; print(sys.version.split()[0])"],
                                                capture_output=True, text=True).stdout.strip(),
                       "environment": _env_label(env, case_dir),
                       "requirements": [AZMLINFSRV] + reqs, "changes": changes, "versions": pip_versions(py, reqs)}
    subprocess.run([py, os.path.join(HERE, "make_models.py"), name], check=True, timeout=600)
    if cj.get("models") or os.path.isdir(os.path.join(case_dir, "requests")):
        cj["made_with"] = json.loads(subprocess.run([py, os.path.join(HERE, "make_models.py"), "--versions"],
                                                    capture_output=True, text=True, check=True).stdout)

    tmp = tempfile.mkdtemp(prefix=f"rec-{name}-", dir=WORK)
    app = os.path.join(tmp, "app")
    code = os.path.join(app, os.path.basename(src))
    shutil.copytree(src, code)
    models = cj.get("models") or []
    for m in models:
        p = os.path.join(case_dir, m["path"])
        dst = os.path.join(app, "azureml-models", m["name"], str(m["version"]), os.path.basename(p.rstrip("/")))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        (shutil.copytree if os.path.isdir(p) else shutil.copy2)(p, dst)
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("AZUREML_", "AML_"))}
    environ.update({k: str(v) for k, v in env_vars.items()})
    # v1: AML_APP_ROOT=/var/azureml-app with the models in its azureml-models/ (where Model.get_model_path
    # looks). v2 managed online endpoints: AML_APP_ROOT is the code directory's root (where azmlinfsrv also
    # looks for a custom swagger<version>.json); the models stay in <app>/azureml-models.
    root = app if cj["kind"] == "v1" else code
    environ["AML_APP_ROOT"] = root
    if len(models) == 1:
        environ["AZUREML_MODEL_DIR"] = os.path.join(app, "azureml-models", models[0]["name"], str(models[0]["version"]))
    elif models:
        environ["AZUREML_MODEL_DIR"] = os.path.join(app, "azureml-models")
    port = free_port()
    log_path = os.path.join(WORK, "logs", f"server-{name}.log")
    log = open(log_path, "wb")
    proc = subprocess.Popen([py, "-c", LAUNCH, "--entry_script", os.path.join(code, entry), "--port", str(port)],
                            cwd=root, env=environ, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    started = False
    try:
        deadline = time.time() + START_TIMEOUT
        while time.time() < deadline and proc.poll() is None:
            try:
                status, _, _ = http("GET", base + "/", timeout=5)
                if status == 200:
                    started = True
                    break
            except (urllib.error.URLError, ConnectionError, socket.timeout, OSError):
                pass
            time.sleep(0.5)
        for r in cj.get("requests", []):
            if not started:
                r["azmlinfsrv"] = {"status": None, "error": "azmlinfsrv did not start (see startup_log_tail)"}
                continue
            try:
                r["azmlinfsrv"] = describe(*http(r["method"], base + r["path"], request_body(case_dir, r),
                                                 r.get("headers")))
            except Exception as e:  # timeout, reset
                r["azmlinfsrv"] = {"status": None, "error": f"{type(e).__name__}: {e}"}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(15)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if started:
        cj.pop("startup_log_tail", None)
    else:
        with open(log_path, errors="replace") as f:
            cj["startup_log_tail"] = f.read().splitlines()[-25:]
    with open(cj_path, "w") as f:
        f.write(json.dumps(cj, indent=2) + "\n")
    return started, [r.get("azmlinfsrv", {}).get("status") for r in cj.get("requests", [])]


def _env_label(env, case_dir):
    if not env:
        return None
    path, _, anchor = env[1].partition("#")
    return os.path.relpath(path, case_dir) + (f"#{anchor}" if anchor else "")


def main(argv):
    os.makedirs(os.path.join(WORK, "logs"), exist_ok=True)
    os.makedirs(os.path.join(WORK, "venvs"), exist_ok=True)
    names = argv or sorted(d for d in os.listdir(HERE) if os.path.isfile(os.path.join(HERE, d, "case.json")))
    failed = 0
    for name in names:
        try:
            started, statuses = record_case(name)
            print(f"{name}: started={started} statuses={statuses}", flush=True)
        except Exception as e:
            failed += 1
            print(f"{name}: FAILED {type(e).__name__}: {e}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
