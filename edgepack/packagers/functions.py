"""The Azure Functions packager: a v2 ``function_app.py`` (HTTP, blob or Service Bus trigger) + ``host.json``
in ``/home/site/wwwroot``. Pure, but for indexing the generated app (an import from a temporary file).

In Azure the Functions host of the base image runs the app (the image keeps the base's entrypoint). Locally,
``edgepack run`` starts the bundled trigger host (``python3 -m triggers``) on the same files instead.
"""

from __future__ import annotations

import json
from importlib import resources
from string import Template

from edgepack.config.entry import run_decorators
from edgepack.config.schema import InferenceConfig
from edgepack.errors import PackagingError
from edgepack.models.artifact import ModelArtifact
from edgepack.oci.layer import FileEntry
from edgepack.oci.plan import ImagePlan, PipLayer
from edgepack.packagers import function_index, layers
from edgepack.targets import FunctionsBlobTarget, FunctionsHttpTarget, FunctionsServiceBusTarget

FunctionsTarget = FunctionsHttpTarget | FunctionsBlobTarget | FunctionsServiceBusTarget

DEFAULT_BASE = "mcr.microsoft.com/azure-functions/python:4-python3.11"
# Pythons the Functions 4 host has images for: a conda file's python= pin picks the matching one.
PYTHONS = ("3.8", "3.9", "3.10", "3.11", "3.12")


def default_base(python: str | None) -> str:
    """The Functions Python image for the pinned Python, where one exists (else the default)."""
    return f"mcr.microsoft.com/azure-functions/python:4-python{python}" if python in PYTHONS else DEFAULT_BASE
SCRIPT_ROOT = "/home/site/wwwroot"
LOCAL_PORT = 80
FUNCTION_REQUIREMENTS = ("azure-functions",)
# What the local trigger host needs to drive each trigger (the Functions host in Azure brings its own).
TRIGGER_REQUIREMENTS = {"functions-http": (), "functions-blob": ("azure-storage-blob", "azure-storage-queue"),
                        "functions-servicebus": ("azure-servicebus",)}
GENERATED = ("function_app.py", "host.json")
LOCAL_COMMAND = ("python3", "-m", "triggers", "--script-root", SCRIPT_ROOT)


def _template(name: str) -> Template:
    return Template((resources.files("triggers") / "templates" / name).read_text())


def render_function_app(target: FunctionsTarget) -> bytes:
    """Fill the target's function template shipped in ``triggers/templates`` (read as a file, never imported)."""
    match target:
        case FunctionsHttpTarget():
            text = _template("http_function_app.py.tmpl").substitute(
                auth_level=target.auth_level.upper(), route=target.route, function_name="score")
        case FunctionsBlobTarget():
            text = _template("blob_function_app.py.tmpl").substitute(
                input_path=target.input_path, output_path=target.output_path, connection=target.connection,
                function_name="score")
        case FunctionsServiceBusTarget():
            text = _template("servicebus_function_app.py.tmpl").substitute(
                input_queue=target.input_queue, output_queue=target.output_queue, connection=target.connection,
                function_name="score")
    return text.encode()


def host_json() -> bytes:
    """The host.json shipped in ``triggers/templates``."""
    return (resources.files("triggers") / "templates" / "host.json").read_bytes()


def plan(models: tuple[ModelArtifact, ...], config: InferenceConfig, target: FunctionsTarget, *,
         base_image: str | None = None) -> ImagePlan:
    """Plan a Functions image whose one function scores what its trigger delivers.

    Raises:
        PackagingError: a ``@rawhttp`` script with a trigger that delivers no HTTP request.
    """
    if not isinstance(target, FunctionsHttpTarget) and "rawhttp" in run_decorators(config.entry_script):
        raise PackagingError(f"packaging '{config.entry_script.name}' for {target.name}: its run() is @rawhttp, "
                             "so it needs an HTTP request, which a blob or queue trigger does not deliver",
                             hint="Package it with --target functions-http or webservice.")
    app_source = render_function_app(target)
    app_files = (
        FileEntry.from_bytes(f"{SCRIPT_ROOT}/function_app.py", app_source),
        FileEntry.from_bytes(f"{SCRIPT_ROOT}/host.json", host_json()),
    )
    auth_level = target.auth_level if isinstance(target, FunctionsHttpTarget) else "anonymous"
    rc = layers.runtime_config(models, config, target=target.name, app_root=SCRIPT_ROOT, source_dest=SCRIPT_ROOT,
                               auth_enabled=auth_level != "anonymous", auth_level=auth_level)
    env = {
        "AzureWebJobsScriptRoot": SCRIPT_ROOT,
        "AzureFunctionsJobHost__Logging__Console__IsEnabled": "true",
        "FUNCTIONS_WORKER_RUNTIME": "python",
        **layers.common_env(rc, config),
    }
    return ImagePlan(
        target=target.name,
        base_image=base_image or config.base_image or default_base(config.python_version),
        layers=(
            PipLayer("python-dependencies",
                     layers.requirements(layers.RUNTIME_REQUIREMENTS, FUNCTION_REQUIREMENTS,
                                         TRIGGER_REQUIREMENTS[target.name], config.pip_requirements),
                     layers.SITE_PACKAGES, comment="python dependencies", index_urls=config.index_urls,
                     find_links=config.find_links, conda_packages=config.conda_packages),
            layers.runtime_layer(with_triggers=True, extra=app_files),
            layers.source_layer(config, SCRIPT_ROOT, settings=rc, reserved=GENERATED),
            *layers.model_layers(models, app_root=SCRIPT_ROOT),
        ),
        env=env,
        entrypoint=None,
        cmd=None,
        workdir=SCRIPT_ROOT,
        labels={function_index.LABEL: json.dumps(function_index.index_function_app(app_source), sort_keys=True),
                **layers.image_labels(models, target.name, port=LOCAL_PORT, auth=auth_level, ready_path="/",
                                      local_command=LOCAL_COMMAND,
                                      score_path=f"/api/{target.route}" if isinstance(target, FunctionsHttpTarget)
                                      else "")},
        exposed_ports=(LOCAL_PORT,),
        local_command=LOCAL_COMMAND,
        port=LOCAL_PORT,
    )
