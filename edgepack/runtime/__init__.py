"""The in-image runtime: loads an Azure ML-style entry script and scores requests. Standard library, numpy and
onnxruntime only; it is copied into images as files and never imports the rest of edgepack.
"""

from edgepack.runtime.response import Response
from edgepack.runtime.scoring import Runtime, load_runtime

__all__ = ["Runtime", "Response", "load_runtime"]
