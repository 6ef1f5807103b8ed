"""OCI distribution client: auth (docker config, credential helpers, Basic/Bearer), pull, push and mounts."""

from edgepack.registry.auth import Credentials, find_credentials
from edgepack.registry.client import RegistryClient
from edgepack.registry.pull import PulledImage, fetch_config, pull_image, resolve_digest
from edgepack.registry.push import IndexChild, Progress, PushResult, blob_exists, push_image, push_index

__all__ = ["Credentials", "find_credentials", "RegistryClient", "PulledImage", "fetch_config", "pull_image",
           "resolve_digest", "IndexChild", "Progress", "PushResult", "blob_exists", "push_image", "push_index"]
