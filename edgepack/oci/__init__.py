"""OCI values: image references, descriptors, deterministic layers, image plans and the on-disk image layout."""
