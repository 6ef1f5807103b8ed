"""Deploy steps take digests, never bare tags: the one check every deployer makes."""

from __future__ import annotations

from edgepack.errors import DeployError
from edgepack.oci.ref import ImageRef


def pinned(image: str) -> ImageRef:
    """``image`` parsed, when it names a digest.

    Raises:
        InvalidReference: not an image reference.
        DeployError: a tag without a digest (what it points to could change under the deployment).
    """
    ref = ImageRef.parse(image)
    if ref.digest is None:
        raise DeployError(f"deploying '{image}': a tag without a digest",
                          hint="Pass REF@sha256:... as printed by 'edgepack push' or 'edgepack package --push'.")
    return ref
