"""Which execution provider an FPGA image runs, decided at start and checked after the fact (in-image).

The accelerator's provider is used only when onnxruntime lists it and its configuration file exists; otherwise,
or with ``EDGEPACK_EP=cpu``, the CPU fallback artifact is served. onnxruntime itself falls back to the CPU with no
more than a warning when a requested provider is missing or refuses the model, so every session the entry script
opens on the model is checked with ``get_providers()``: when the accelerator did not take it, the session is
opened again on the CPU artifact (a model shaped for a DPU can run slower than FP32 on a CPU) and the reason is
recorded. One log line says which provider runs and why; ``/info`` reports the same. ``get_providers()`` names
the providers a session has, not where each node runs: on a board, Vitis AI's own report
(``vitisai_ep_report.json``) tells how the model was split.

``EDGEPACK_EP``: ``auto`` (default), ``cpu`` (always the CPU artifact), ``accelerator`` (refuse to start without
it: for deployments where a CPU fallback would be a silent failure).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field, replace
from typing import Any

from edgepack.runtime.settings import AcceleratorSettings, RuntimeConfig, RuntimeSetupError

ENV = "EDGEPACK_EP"
MODES = ("auto", "cpu", "accelerator")
CPU = "CPUExecutionProvider"
log = logging.getLogger("edgepack.fpga")


@dataclass
class Execution:
    """What runs: the provider, the model folder and file in use, and why (updated when a session opens)."""

    provider: str
    accelerated: bool
    reason: str
    model: dict[str, Any]
    model_dir: str
    cpu_dir: str
    profile: str
    options: dict[str, str] = field(default_factory=dict)
    required: bool = False  # EDGEPACK_EP=accelerator: a session the accelerator does not take is an error
    model_file: str = ""
    session_providers: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The ``execution`` part of ``/info``."""
        return {"provider": self.provider, "accelerated": self.accelerated, "reason": self.reason,
                "profile": self.profile, "model": self.model, "model_dir": self.model_dir,
                "model_file": self.model_file, "session_providers": list(self.session_providers),
                "verified_on_hardware": False}


def choose(settings: AcceleratorSettings, config: RuntimeConfig, *, available: list[str],
           mode: str) -> Execution:
    """The provider and artifact to serve with, before any session exists.

    Raises:
        RuntimeSetupError: an unknown ``EDGEPACK_EP``, or ``accelerator`` demanded but not usable here.
    """
    if mode not in MODES:
        raise RuntimeSetupError(f"{ENV}={mode!r}: expected one of {', '.join(MODES)}")
    accelerated_entry, cpu_entry = config.entry(settings.model), config.entry(settings.cpu_model)
    if mode == "cpu":
        reason = f"{ENV}=cpu forces the CPU"
    elif settings.provider not in available:
        reason = f"{settings.provider} not in this onnxruntime build (available={available})"
    elif not os.path.isfile(settings.config_file):
        reason = f"{settings.provider} configuration {settings.config_file} is missing"
    else:
        reason = ""
    if reason and mode == "accelerator":
        raise RuntimeSetupError(f"{ENV}=accelerator, but the accelerator cannot be used: {reason}")
    if reason:
        return Execution(CPU, False, reason, {"name": cpu_entry.name, "version": cpu_entry.version},
                         cpu_entry.dir, cpu_entry.dir, settings.profile)
    options = {"config_file": settings.config_file, **settings.provider_options}
    return Execution(settings.provider, True, f"{settings.provider} is in this onnxruntime build and "
                     f"{settings.config_file} exists", {"name": accelerated_entry.name,
                                                        "version": accelerated_entry.version},
                     accelerated_entry.dir, cpu_entry.dir, settings.profile, options, required=mode == "accelerator")


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return os.path.commonpath([path, folder]) == folder


def install(execution: Execution, ort: Any) -> None:
    """Make every ``ort.InferenceSession`` opened on a file of the served model use the chosen provider, and
    check after opening that it does (see the module docstring)."""
    original = ort.InferenceSession
    if getattr(original, "edgepack_execution", None) is not None:
        original = original.__mro__[1]

    served = execution.model_dir  # what AZUREML_MODEL_DIR names, whatever loads in the end

    class InferenceSession(original):  # type: ignore[misc, valid-type]
        edgepack_execution = execution

        def __init__(self, path_or_bytes: Any, sess_options: Any = None, providers: Any = None,
                     provider_options: Any = None, **kwargs: Any) -> None:
            path = os.fspath(path_or_bytes) if isinstance(path_or_bytes, (str, os.PathLike)) else None
            if path is None or not _inside(path, served):
                super().__init__(path_or_bytes, sess_options, providers, provider_options, **kwargs)
                return
            relative = os.path.relpath(path, served)
            with execution._lock:
                if execution.accelerated:
                    super().__init__(path, sess_options, [execution.provider, CPU], [execution.options, {}],
                                     **kwargs)
                    got = self.get_providers()
                    if not got or got[0] != execution.provider:
                        why = f"onnxruntime did not place the model on {execution.provider} (session providers={got})"
                        if execution.required:
                            raise RuntimeSetupError(f"{ENV}=accelerator, but {why}")
                        _fall_back(execution, why)
                if not execution.accelerated:
                    path = os.path.join(execution.model_dir, relative)
                    super().__init__(path, sess_options, [CPU], None, **kwargs)
                execution.model_file = path
                execution.session_providers = list(self.get_providers())
                _announce(execution)

    ort.InferenceSession = InferenceSession


def _fall_back(execution: Execution, reason: str) -> None:
    execution.provider, execution.accelerated, execution.reason = CPU, False, reason
    execution.model_dir, execution.options = execution.cpu_dir, {}


def _announce(execution: Execution) -> None:
    if execution.accelerated:
        log.info("execution provider=%s model=%s options=%s", execution.provider, execution.model_file,
                 execution.options)
    else:
        log.warning("execution provider=%s model=%s (accelerator NOT used: %s)", execution.provider,
                    execution.model_file, execution.reason)


def prepare(config: RuntimeConfig) -> tuple[RuntimeConfig, dict[str, Any]]:
    """The runtime's start step for an FPGA image: choose, install the session check, serve the chosen folder.

    Raises:
        RuntimeSetupError: not an FPGA image, or ``EDGEPACK_EP`` cannot be met.
    """
    import onnxruntime as ort

    if config.accelerator is None:
        raise RuntimeSetupError("runtime config: no 'accelerator' settings (not an FPGA image)")
    execution = choose(config.accelerator, config, available=list(ort.get_available_providers()),
                       mode=os.environ.get(ENV, "auto").strip().lower() or "auto")
    install(execution, ort)
    served = config.entry(execution.model)
    config = replace(config, model_dir=served.dir,
                     model={"name": served.name, "version": served.version, "sha256": served.sha256})
    return config, {"execution": execution.as_dict}
