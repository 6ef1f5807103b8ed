"""``from azureml.core import Model`` inside a deployed service."""
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

from azureml.core.model import Model  # noqa: E402

__all__ = ["Model"]
