"""Deployers: where built images are started (the local Docker engine now; Azure and Kubernetes later)."""
