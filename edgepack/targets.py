"""Deployment targets: pure values naming where an image will run and the options that shape it.

``parse_target`` turns the CLI's ``--target NAME`` plus its options into one of these; packagers dispatch on
the type with ``match``. Targets still to come (blob and Service Bus functions, IoT Edge, FPGA) are named in
``TARGET_NAMES`` so the CLI can say they are planned rather than unknown.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgepack.errors import ConfigError

AUTH_LEVELS = ("anonymous", "function", "admin")
SUPPORTED = ("webservice", "functions-http")
PLANNED = ("functions-blob", "functions-servicebus", "iot-edge", "fpga")
TARGET_NAMES = SUPPORTED + PLANNED


@dataclass(frozen=True)
class WebServiceTarget:
    """A plain scoring web service (Azure ML's ACI/AKS webservice contract): POST /score on port 5001."""

    auth: bool = True
    port: int = 5001
    name: str = "webservice"


@dataclass(frozen=True)
class FunctionsHttpTarget:
    """An Azure Functions app with one HTTP-triggered scoring function at /api/<route>."""

    auth_level: str = "function"
    route: str = "score"
    name: str = "functions-http"


Target = WebServiceTarget | FunctionsHttpTarget


def parse_target(name: str, *, auth_level: str | None = None, no_auth: bool = False) -> Target:
    """Build a target from its CLI name and options, rejecting options that do not apply to it.

    Raises:
        ConfigError: unknown or not yet supported target, or an option that does not fit the target.
    """
    problems: list[str] = []
    match name:
        case "webservice":
            if auth_level is not None:
                problems.append("--auth-level: applies to functions-http only (use --no-auth for webservice)")
            target: Target = WebServiceTarget(auth=not no_auth)
        case "functions-http":
            level = (auth_level or "function").lower()
            if level not in AUTH_LEVELS:
                problems.append(f"--auth-level: '{auth_level}' is not one of {', '.join(AUTH_LEVELS)}")
            if no_auth:
                problems.append("--no-auth: applies to webservice only (use --auth-level anonymous)")
            target = FunctionsHttpTarget(auth_level=level)
        case _ if name in PLANNED:
            raise ConfigError(f"packaging for target '{name}': not available in this version",
                              hint=f"Use one of: {', '.join(SUPPORTED)}.")
        case _:
            raise ConfigError(f"choosing target '{name}': unknown target",
                              hint=f"Use one of: {', '.join(SUPPORTED)}.")
    if problems:
        raise ConfigError(f"target '{name}' options are invalid", problems=tuple(problems),
                          hint="Fix the options listed above.")
    return target
