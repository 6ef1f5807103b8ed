"""The one error tree of edgepack; imports nothing from edgepack.

Every error raised on purpose carries a message (what was being done, to what, and why it failed)
and an optional one-line hint (what the user can do about it)::

    EdgepackError                 message + hint; never raised bare
    ├── ConfigError               .source (file) + .problems, every field problem at once
    ├── ModelError
    │   ├── ModelNotFound         name:version not in the store
    │   └── InvalidModel          onnx.checker failure, unreadable or escaping model files
    ├── PackagingError            the target can't be met (missing entry script function, unresolvable requirement)
    ├── DaemonError               Docker engine unreachable, or a run failed (.log_tail)
    ├── RegistryError             pull or push failed, including in-stream errors
    │   ├── InvalidReference      a malformed image reference
    │   └── AuthenticationError   the registry refused the credentials
    ├── DeployError               the apply step failed (.command, .returncode, .stderr_tail)
    ├── ProfileError              the entry script would not start or refused the sample under profiling
    ├── HubError                  the local IoT hub is not running, cannot start, or refused a request
    ├── FpgaError                 the accelerator pipeline refused a model, its data or a profile
    │   ├── UnknownAcceleratorProfile   no accelerator profile of that name
    │   ├── CalibrationDataError  calibration or evaluation data missing, of the wrong shape or dtype, or
    │   │                         labels that do not match it
    │   ├── QuantizationInvariantError  a quantized model breaks the profile's rules (.problems names the nodes)
    │   └── NotQuantized          an unquantized model was asked for the accelerator
    └── FleetError                a fleet rollout cannot start or go on
        ├── RolloutSpecError      a wave, gate, abort or duration expression that does not parse (says where)
        └── LeaseHeld             another controller holds the rollout

Messages follow the form ``"<doing what> '<subject>': <cause>"``: lowercase, no trailing period.
Third-party exceptions are translated once, at the edge, with ``raise XError(...) from exc``.
"""

from __future__ import annotations

__all__ = [
    "EdgepackError",
    "ConfigError",
    "ModelError",
    "ModelNotFound",
    "InvalidModel",
    "PackagingError",
    "DaemonError",
    "RegistryError",
    "InvalidReference",
    "AuthenticationError",
    "DeployError",
    "ProfileError",
    "HubError",
    "FpgaError",
    "UnknownAcceleratorProfile",
    "CalibrationDataError",
    "QuantizationInvariantError",
    "NotQuantized",
    "FleetError",
    "RolloutSpecError",
    "LeaseHeld",
]


class EdgepackError(Exception):
    """Base of every error edgepack raises on purpose: a message and an optional one-line hint."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class ConfigError(EdgepackError):
    """A configuration file or option is invalid; ``problems`` lists every field problem found."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        problems: tuple[str, ...] = (),
        hint: str | None = None,
    ) -> None:
        if problems:
            message = message + ":\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(message, hint=hint)
        self.source = source
        self.problems = tuple(problems)


class ModelError(EdgepackError):
    """A model could not be registered, found or read."""


class ModelNotFound(ModelError):
    """The named model or version is not in the store."""


class InvalidModel(ModelError):
    """The model files are not acceptable (onnx.checker failure, escaping paths, unreadable files)."""


class PackagingError(EdgepackError):
    """The model and config cannot be packaged for the chosen target."""


class LayoutError(EdgepackError):
    """An OCI image layout on disk is not one edgepack can read (the message says what is wrong)."""


class DaemonError(EdgepackError):
    """The Docker engine is unreachable, or an operation on it failed."""

    def __init__(self, message: str, *, hint: str | None = None, log_tail: str = "") -> None:
        super().__init__(message, hint=hint)
        self.log_tail = log_tail


class RegistryError(EdgepackError):
    """A registry operation (pull, push, auth challenge) failed.

    ``temporary`` is True when trying again may succeed (the registry was unreachable, overloaded or failed
    with a 5xx or 429; a transfer broke off), as go-containerregistry's transport errors say ``Temporary()``.
    ``status`` is the HTTP status the registry answered, when it answered.
    """

    def __init__(self, message: str, *, hint: str | None = None, temporary: bool = False,
                 status: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.temporary = temporary
        self.status = status


class InvalidReference(RegistryError):
    """An image reference could not be parsed."""


class AuthenticationError(RegistryError):
    """The registry refused the credentials, or none were found where they were needed."""


class DeployError(EdgepackError):
    """Applying a deployment failed."""

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        command: str = "",
        returncode: int | None = None,
        stderr_tail: str = "",
    ) -> None:
        super().__init__(message, hint=hint)
        self.command = command
        self.returncode = returncode
        self.stderr_tail = stderr_tail


class ProfileError(EdgepackError):
    """Profiling could not measure: the entry script did not start, or the sample was refused."""


class HubError(EdgepackError):
    """The local IoT hub is not running, cannot start, or refused a request."""


class FpgaError(EdgepackError):
    """The accelerator pipeline (quantize, evaluate, report, package) refused a model, its data or a profile."""


class UnknownAcceleratorProfile(FpgaError):
    """No accelerator profile has the given name."""


class CalibrationDataError(FpgaError):
    """Calibration or evaluation data is missing, does not fit the model's inputs, or its labels do not match."""


class QuantizationInvariantError(FpgaError):
    """A quantized model breaks the profile's rules; ``problems`` names each offending node."""

    def __init__(self, message: str, *, problems: tuple[str, ...] = (), hint: str | None = None) -> None:
        if problems:
            message = message + ":\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(message, hint=hint)
        self.problems = tuple(problems)


class NotQuantized(FpgaError):
    """An unquantized (float) model was asked for the accelerator, which runs only quantized nodes."""


class FleetError(EdgepackError):
    """A fleet rollout cannot start or go on (bad target, name in use, hub refusal)."""


class RolloutSpecError(FleetError):
    """A wave, gate, abort or duration expression that does not parse; the message says where."""


class LeaseHeld(FleetError):
    """Another controller holds the rollout's lease."""


class AttestationError(EdgepackError):
    """An image's SBOM or provenance is missing or unreadable, or a rebuild from its recorded inputs differs."""
