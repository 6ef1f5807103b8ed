"""The Azure Functions HTTP packager: a v2 ``function_app.py`` + ``host.json`` in ``/home/site/wwwroot``. Pure.

In Azure the Functions host of the base image runs the app (the image keeps the base's entrypoint). Locally,
``edgepack run`` starts the bundled trigger host (``python3 -m triggers``) on the same files instead.
"""

from __future__ import annotations

from importlib import resources
from string import Template

from edgepack.config.schema import InferenceConfig
from edgepack.models.artifact import ModelArtifact
from edgepack.oci.layer import FileEntry
from edgepack.oci.plan import ImagePlan, PipLayer
from edgepack.packagers import layers
from edgepack.targets import FunctionsHttpTarget

DEFAULT_BASE = "mcr.microsoft.com/azure-functions/python:4-python3.11"
SCRIPT_ROOT = "/home/site/wwwroot"
LOCAL_PORT = 80
FUNCTION_REQUIREMENTS = ("azure-functions",)
GENERATED = ("function_app.py", "host.json")
LOCAL_COMMAND = ("python3", "-m", "triggers", "--script-root", SCRIPT_ROOT, "--port", str(LOCAL_PORT))


def render_function_app(target: FunctionsHttpTarget) -> bytes:
    """Fill the HTTP function template shipped in ``triggers/templates`` (read as a file, never imported)."""
    text = (resources.files("triggers") / "templates" / "http_function_app.py.tmpl").read_text()
    return Template(text).substitute(auth_level=target.auth_level.upper(), route=target.route,
                                     function_name="score").encode()


def host_json() -> bytes:
    """The host.json shipped in ``triggers/templates``."""
    return (resources.files("triggers") / "templates" / "host.json").read_bytes()


def plan(model: ModelArtifact, config: InferenceConfig, target: FunctionsHttpTarget, *,
         base_image: str | None = None) -> ImagePlan:
    """Plan a Functions image whose HTTP trigger scores at ``/api/<route>`` with the chosen auth level."""
    app_files = (
        FileEntry.from_bytes(f"{SCRIPT_ROOT}/function_app.py", render_function_app(target)),
        FileEntry.from_bytes(f"{SCRIPT_ROOT}/host.json", host_json()),
    )
    rc = layers.runtime_config(model, config, target=target.name, app_root=SCRIPT_ROOT, source_dest=SCRIPT_ROOT,
                               auth_enabled=target.auth_level != "anonymous", auth_level=target.auth_level)
    env = {
        "AzureWebJobsScriptRoot": SCRIPT_ROOT,
        "AzureFunctionsJobHost__Logging__Console__IsEnabled": "true",
        "FUNCTIONS_WORKER_RUNTIME": "python",
        **layers.common_env(model, SCRIPT_ROOT, config),
    }
    return ImagePlan(
        target=target.name,
        base_image=base_image or config.base_image or DEFAULT_BASE,
        layers=(
            PipLayer("python-dependencies",
                     layers.requirements(layers.RUNTIME_REQUIREMENTS, FUNCTION_REQUIREMENTS,
                                         config.pip_requirements),
                     layers.SITE_PACKAGES, comment="python dependencies"),
            layers.runtime_layer(with_triggers=True, extra=app_files),
            layers.source_layer(config, SCRIPT_ROOT, reserved=GENERATED),
            layers.model_layer(model, app_root=SCRIPT_ROOT, runtime_config=rc),
        ),
        env=env,
        entrypoint=None,
        cmd=None,
        workdir=SCRIPT_ROOT,
        labels={**layers.model_labels(model, target.name),
                **layers.run_labels(port=LOCAL_PORT, auth=target.auth_level, score_path=f"/api/{target.route}",
                                    ready_path="/", local_command=LOCAL_COMMAND)},
        exposed_ports=(LOCAL_PORT,),
        local_command=LOCAL_COMMAND,
        port=LOCAL_PORT,
    )
