"""Conda environments as pip requirements: what Azure ML's conda files ask for, installed from the package index.

Pure. Conda channel packages that the package index also has (numpy, scikit-learn, pandas...) become pip
requirements with their pins translated; the ``python=`` pin is kept apart (it chooses the base image); system
libraries conda installs but pip wheels bundle are dropped with a note; the pip section is read as a
requirements file. Whether a translated package really exists on the index is for the resolver to find out:
it knows which requirements came from conda channels, and says so when one is missing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from edgepack.config.requirements import RequirementSet, parse_requirements

# Conda names whose package on the index has another name.
PIP_NAMES = {
    "pytorch": "torch", "pytorch-cpu": "torch", "py-xgboost": "xgboost", "py-lightgbm": "lightgbm",
    "tensorflow-mkl": "tensorflow", "tensorflow-eigen": "tensorflow", "opencv": "opencv-python-headless",
    "py-opencv": "opencv-python-headless", "pytables": "tables", "msgpack-python": "msgpack",
    "pyyaml": "pyyaml", "matplotlib-base": "matplotlib", "typing_extensions": "typing-extensions",
    "pillow-simd": "pillow", "python-dateutil": "python-dateutil",
}
# Conda packages that are C/C++ runtimes or BLAS builds: pip wheels bundle what they need, so nothing is installed.
BUNDLED = {
    "mkl", "mkl-service", "mkl_fft", "mkl_random", "mkl-include", "blas", "libblas", "libcblas", "liblapack",
    "openblas", "libopenblas", "nomkl", "intel-openmp", "libgcc", "libgcc-ng", "libstdcxx-ng", "libgfortran",
    "libgfortran-ng", "libgomp", "_libgcc_mutex", "_openmp_mutex", "openssl", "ca-certificates", "certifi",
    "setuptools", "wheel", "pip", "ncurses", "readline", "sqlite", "tk", "xz", "zlib", "libffi", "bzip2",
    "ld_impl_linux-64", "libuuid", "tzdata", "cudatoolkit", "cudnn", "cuda-toolkit", "pytorch-cuda",
    "cpuonly", "pytorch-mutex",
}
_SPEC = re.compile(r"^(?:(?P<channel>[A-Za-z0-9_.\-/]+)::)?(?P<name>[A-Za-z0-9_.\-]+)\s*(?P<rest>.*)$")


@dataclass(frozen=True)
class CondaEnvironment:
    """A conda file read for pip: requirements (pip section last), the ``python=`` pin, problems and notes."""

    requirements: RequirementSet
    python: str | None
    conda_packages: tuple[str, ...]
    problems: tuple[str, ...]
    notes: tuple[str, ...]


def _pip_version(rest: str) -> tuple[str | None, str | None]:
    """A conda version spec (``=1.2``, ``1.2.*``, ``>=1.2,<2``, ``=1.2=py38_0``) as a pip one; (spec, dropped build)."""
    rest = rest.strip()
    if not rest:
        return "", None
    build = None
    if rest.startswith("=") and not rest.startswith("=="):
        parts = rest[1:].split("=")
        version, build = parts[0], (parts[1] if len(parts) > 1 else None)
        return (f"=={version}" if version.endswith("*") else f"=={version}.*" if version.count(".") < 2
                else f"=={version}"), build
    if rest.startswith("=="):
        parts = rest[2:].split("=")
        return f"=={parts[0]}", (parts[1] if len(parts) > 1 else None)
    if " " in rest and rest[0] not in "<>!~":
        version, build = rest.split(None, 1)
        return _pip_version(version)[0], build
    if rest[0] not in "<>!~":
        return f"=={rest}", None
    return rest.replace(" ", ""), None


def python_pin(spec: str) -> str | None:
    """``3.8`` from ``python=3.8.10``, ``python==3.6.2``, ``python 3.9.*`` or ``python>=3.8`` (the lowest named)."""
    match = re.search(r"(\d+)\.(\d+)", spec)
    return f"{match.group(1)}.{match.group(2)}" if match else None


def read_conda(env: Any, field: str) -> CondaEnvironment:
    """Translate a parsed conda environment (``name``, ``channels``, ``dependencies``) for pip."""
    problems: list[str] = []
    notes: list[str] = []
    if not isinstance(env, dict) or not isinstance(env.get("dependencies") or [], list):
        return CondaEnvironment(RequirementSet(), None, (), (f"{field}: must be a conda environment (a mapping "
                                                             "with a 'dependencies' list)",), ())
    python = None
    conda_lines: list[str] = []
    pip_text: list[str] = []
    for dep in env.get("dependencies") or []:
        if isinstance(dep, dict):
            pip = dep.get("pip")
            if isinstance(pip, list):
                pip_text += [str(x) for x in pip]
            else:
                problems.append(f"{field}: '{dep}' is not a package (only a 'pip:' list may be a mapping)")
            continue
        match = _SPEC.match(str(dep).strip())
        if match is None:
            problems.append(f"{field}: '{dep}' is not a conda package spec")
            continue
        name = match.group("name").lower()
        if name == "python":
            python = python_pin(match.group("rest"))
            continue
        if name in BUNDLED:
            if name not in ("pip", "setuptools", "wheel"):
                notes.append(f"{field}: '{dep}' is not installed: it is a native library conda ships and pip "
                             "wheels bundle")
            continue
        version, build = _pip_version(match.group("rest"))
        if build:
            notes.append(f"{field}: '{dep}': the conda build string '{build}' is ignored (pip picks the wheel)")
        pip_name = PIP_NAMES.get(name, name)
        conda_lines.append(f"{pip_name}{version}")
    conda_reqs, conda_problems = parse_requirements("\n".join(conda_lines), f"{field}: dependencies")
    pip_reqs, pip_problems = parse_requirements("\n".join(pip_text), f"{field}: pip")
    problems += conda_problems + pip_problems
    return CondaEnvironment(conda_reqs.merged(pip_reqs), python, conda_reqs.names(), tuple(problems),
                            tuple(notes))
