"""``azureml.core.model.Model.get_model_path``: where a deployed model's files are, found as azureml-core does.

Inside a service there is no workspace: the model is looked up under ``$AML_APP_ROOT/azureml-models/NAME/``
(the newest version unless one is named), whose version folder holds exactly one entry, the registered file or
folder; failing that, ``NAME`` relative to the working directory.
"""

from __future__ import annotations

import os


class WebserviceException(Exception):
    """A bad argument or an unexpected model folder, as azureml-core raises it."""

    def __init__(self, exception_message: str, *args: object, **kwargs: object) -> None:
        super().__init__(exception_message)
        self.message = exception_message


class ModelNotFoundException(WebserviceException):
    """No such model among the deployed ones."""


def _models_dir() -> str:
    return os.path.join(os.environ.get("AML_APP_ROOT", ""), "azureml-models")


def _latest(versions: list[str]) -> str:
    numbered = [v for v in versions if v.isdigit()]
    return str(max(map(int, numbered))) if numbered else sorted(versions)[-1]


class Model:
    """The part of azureml-core's Model a scoring script uses."""

    @staticmethod
    def get_model_path(model_name: str, version: int | None = None, _workspace: object = None) -> str:
        """The path of the deployed model ``model_name`` (its file, or its folder when a folder was registered).

        Raises:
            WebserviceException: ``version`` is not an int, or the version folder holds more than one entry.
            ModelNotFoundException: no such model is deployed here.
        """
        if version is not None and not isinstance(version, int):
            raise WebserviceException("version should be an int")
        if model_name is None:
            raise WebserviceException("model_name is None")
        models = _models_dir()
        folder = os.path.join(models, model_name)
        if os.path.isdir(folder) and os.listdir(folder):
            chosen = os.path.join(folder, str(version) if version is not None else _latest(os.listdir(folder)))
            if os.path.isdir(chosen):
                entries = os.listdir(chosen)
                if len(entries) != 1:
                    raise WebserviceException(f"Dir {chosen} can contain only 1 file or folder. Found {entries}")
                return os.path.join(chosen, entries[0])
        if os.path.exists(model_name):
            return model_name
        raise ModelNotFoundException(f"Model {model_name} not found in cache at {models} or in current working "
                                     f"directory {os.getcwd()}. For more info, set logging level to DEBUG.")
