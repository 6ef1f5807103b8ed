"""Deployment targets: pure values naming where an image will run and the options that shape it.

``parse_target`` turns the CLI's ``--target NAME`` plus its options into one of these; packagers dispatch on
the type with ``match``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from edgepack.errors import ConfigError
from edgepack.runtime.settings import DEFAULT_MODULE_INPUT, DEFAULT_MODULE_OUTPUT

AUTH_LEVELS = ("anonymous", "function", "admin")
SUPPORTED = ("webservice", "functions-http", "functions-blob", "functions-servicebus", "iot-edge", "fpga")
PLANNED: tuple[str, ...] = ()
TARGET_NAMES = SUPPORTED + PLANNED
_EXPRESSION = re.compile(r"\{([^{}]*)\}")
_BUILTINS = {"rand-guid", "DateTime"}
_SETTING = re.compile(r"^%[A-Za-z_][A-Za-z0-9_]*%$")
_QUEUE = re.compile(r"^(?:[a-z0-9](?:[a-z0-9._/-]{0,258}[a-z0-9])?|%[A-Za-z_][A-Za-z0-9_]*%)$", re.IGNORECASE)


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


@dataclass(frozen=True)
class FunctionsBlobTarget:
    """A Functions app scoring each blob matching ``input_path`` into ``output_path`` (Azure ML's package_blob)."""

    input_path: str
    output_path: str
    connection: str = "AzureWebJobsStorage"
    name: str = "functions-blob"


@dataclass(frozen=True)
class FunctionsServiceBusTarget:
    """A Functions app scoring each message of ``input_queue`` into ``output_queue`` (package_service_bus_queue)."""

    input_queue: str
    output_queue: str
    connection: str = "AzureWebJobsServiceBus"
    name: str = "functions-servicebus"


# IoT Edge input and output names: letters, digits, '-', '_' and '.', as routes write them.
_ENDPOINT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class IoTEdgeTarget:
    """An IoT Edge module whose agent scores the messages routed to ``module_input`` into ``module_output``."""

    module_input: str = DEFAULT_MODULE_INPUT
    module_output: str = DEFAULT_MODULE_OUTPUT
    name: str = "iot-edge"


@dataclass(frozen=True)
class FpgaTarget:
    """An FPGA-accelerated scoring web service (the webservice contract): a quantized model for the profile's
    accelerator, a CPU fallback (``cpu_model``, else the model the quantized one was made from), the provider
    chosen at start."""

    profile: str | None = None
    cpu_model: str | None = None
    auth: bool = True
    port: int = 5001
    name: str = "fpga"


Target = (WebServiceTarget | FunctionsHttpTarget | FunctionsBlobTarget | FunctionsServiceBusTarget | IoTEdgeTarget
          | FpgaTarget)


def _blob_path_problems(option: str, path: str | None, captures: set[str] | None = None) -> list[str]:
    """Problems of a blob path ``container/pattern``; ``captures`` are the names the output may use."""
    if not path:
        return [f"{option}: required for functions-blob (for example input/{{blobname}}.json)"]
    container, sep, pattern = path.partition("/")
    problems = []
    if not sep or not pattern:
        problems.append(f"{option}: '{path}' must be CONTAINER/PATTERN")
    if "{" in container or "}" in container:
        problems.append(f"{option}: the container part '{container}' cannot hold an expression "
                        "(use a literal name or a %AppSetting%)")
    elif not _SETTING.fullmatch(container) and not re.fullmatch(r"^[a-z0-9](?:[a-z0-9-]{1,61}[a-z0-9])$", container):
        problems.append(f"{option}: '{container}' is not a valid container name (3-63 lowercase letters, digits, '-')")
    if captures is not None:
        for name in _EXPRESSION.findall(pattern):
            if name not in captures and name not in _BUILTINS:
                problems.append(f"{option}: '{{{name}}}' is not captured by --input-path")
    return problems


def _blob_target(input_path: str | None, output_path: str | None, connection: str | None) -> tuple[Target, list[str]]:
    problems = _blob_path_problems("--input-path", input_path)
    captures = set(_EXPRESSION.findall((input_path or "").partition("/")[2]))
    problems += _blob_path_problems("--output-path", output_path, captures)
    if input_path and output_path and input_path.partition("/")[0] == output_path.partition("/")[0]:
        problems.append("--output-path: must be in another container than --input-path (outputs would trigger "
                        "the function again)")
    return FunctionsBlobTarget(input_path or "", output_path or "", connection or "AzureWebJobsStorage"), problems


def _servicebus_target(input_queue: str | None, output_queue: str | None,
                       connection: str | None) -> tuple[Target, list[str]]:
    problems = []
    for option, value in (("--input-queue", input_queue), ("--output-queue", output_queue)):
        if not value:
            problems.append(f"{option}: required for functions-servicebus")
        elif not _QUEUE.match(value):
            problems.append(f"{option}: '{value}' is not a valid queue name or %AppSetting%")
    if input_queue and input_queue == output_queue:
        problems.append("--output-queue: must differ from --input-queue (outputs would be scored again)")
    return FunctionsServiceBusTarget(input_queue or "", output_queue or "",
                                     connection or "AzureWebJobsServiceBus"), problems


def parse_target(name: str, *, auth_level: str | None = None, no_auth: bool = False, input_path: str | None = None,
                 output_path: str | None = None, input_queue: str | None = None, output_queue: str | None = None,
                 connection: str | None = None, module_input: str | None = None,
                 module_output: str | None = None, profile: str | None = None,
                 cpu_model: str | None = None) -> Target:
    """Build a target from its CLI name and options, rejecting options that do not apply to it.

    Raises:
        ConfigError: unknown or not yet supported target, or options that are missing or do not fit (all listed).
    """
    given = {"--auth-level": auth_level, "--no-auth": no_auth or None, "--input-path": input_path,
             "--output-path": output_path, "--input-queue": input_queue, "--output-queue": output_queue,
             "--connection": connection, "--module-input": module_input, "--module-output": module_output,
             "--profile": profile, "--cpu-model": cpu_model}
    allowed = {"webservice": {"--no-auth"}, "functions-http": {"--auth-level"},
               "functions-blob": {"--input-path", "--output-path", "--connection"},
               "functions-servicebus": {"--input-queue", "--output-queue", "--connection"},
               "iot-edge": {"--module-input", "--module-output"},
               "fpga": {"--no-auth", "--profile", "--cpu-model"}}
    if name in PLANNED:
        raise ConfigError(f"packaging for target '{name}': not available in this version",
                          hint=f"Use one of: {', '.join(SUPPORTED)}.")
    if name not in allowed:
        raise ConfigError(f"choosing target '{name}': unknown target", hint=f"Use one of: {', '.join(SUPPORTED)}.")
    problems = [f"{opt}: does not apply to {name}" for opt, value in given.items()
                if value is not None and opt not in allowed[name]]
    match name:
        case "webservice":
            target: Target = WebServiceTarget(auth=not no_auth)
        case "functions-http":
            level = (auth_level or "function").lower()
            if level not in AUTH_LEVELS:
                problems.append(f"--auth-level: '{auth_level}' is not one of {', '.join(AUTH_LEVELS)}")
            target = FunctionsHttpTarget(auth_level=level)
        case "fpga":
            target = FpgaTarget(profile=profile, cpu_model=cpu_model, auth=not no_auth)
        case "functions-blob":
            target, more = _blob_target(input_path, output_path, connection)
            problems += more
        case "iot-edge":
            target = IoTEdgeTarget(module_input or DEFAULT_MODULE_INPUT, module_output or DEFAULT_MODULE_OUTPUT)
            for option, value in (("--module-input", target.module_input), ("--module-output", target.module_output)):
                if not _ENDPOINT.fullmatch(value):
                    problems.append(f"{option}: '{value}' is not a valid endpoint name (letters, digits, '-', '_', "
                                    "'.'; up to 64)")
        case _:
            target, more = _servicebus_target(input_queue, output_queue, connection)
            problems += more
    if problems:
        raise ConfigError(f"target '{name}' options are invalid", problems=tuple(problems),
                          hint="Fix the options listed above.")
    return target


def target_from_dict(data: dict) -> Target:
    """The target a provenance statement records (``dataclasses.asdict`` of it), rebuilt.

    Raises:
        ValueError: no target of that name.
    """
    for cls in (WebServiceTarget, FunctionsHttpTarget, FunctionsBlobTarget, FunctionsServiceBusTarget,
                IoTEdgeTarget, FpgaTarget):
        if data.get("name") == cls.name:
            return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})
    raise ValueError(f"no target named {data.get('name')!r}")
