"""The IoT Edge packager: a module image whose entrypoint is the on-device agent (``python3 -m device_agents``).
Pure.

The layers are the webservice's (slim Python base, ``/app``, the layer order of DESIGN.md) with the device SDK
among the dependencies and the agent beside the runtime. The agent keeps its queues and models in
``/var/lib/edgepack``, which a deployment binds to a host folder so they survive restarts and reboots.
"""

from __future__ import annotations

from edgepack.config.schema import InferenceConfig
from edgepack.models.artifact import ModelArtifact
from edgepack.oci.plan import ImagePlan
from edgepack.packagers import layers
from edgepack.packagers.webservice import APP_ROOT, SOURCE_DEST, default_base
from edgepack.runtime.edge import DEFAULT_STATE_DIR, STATE_DIR
from edgepack.targets import IoTEdgeTarget

AGENT_REQUIREMENTS = ("azure-iot-device>=2.14,<3",)


def plan(models: tuple[ModelArtifact, ...], config: InferenceConfig, target: IoTEdgeTarget, *,
         base_image: str | None = None) -> ImagePlan:
    """Plan a module image: deps (with the device SDK), runtime and agent, source, models."""
    rc = layers.runtime_config(models, config, target=target.name, app_root=APP_ROOT, source_dest=SOURCE_DEST,
                               auth_enabled=False, module_input=target.module_input,
                               module_output=target.module_output)
    env = {**layers.common_env(rc, config), STATE_DIR: DEFAULT_STATE_DIR}
    requirements = layers.requirements(layers.RUNTIME_REQUIREMENTS, AGENT_REQUIREMENTS, config.pip_requirements)
    return ImagePlan(
        target=target.name,
        base_image=base_image or config.base_image or default_base(config.python_version),
        layers=layers.app_layers(models, config, rc, requirements=requirements, source_dest=SOURCE_DEST,
                                 app_root=APP_ROOT, with_agent=True),
        env=env,
        entrypoint=("python3", "-m", "device_agents"),
        cmd=None,
        workdir=SOURCE_DEST,
        labels=layers.image_labels(models, target.name, port=0, auth="none", score_path="", ready_path="",
                                   module_input=target.module_input, module_output=target.module_output),
        exposed_ports=(),
        local_command=None,
        port=0,
    )
