"""Credentials go to the registry they are for, never to another host."""

from __future__ import annotations

from edgepack.api import RegistryOptions
from edgepack.oci.ref import ImageRef

DEST = ImageRef.parse("dest.example/team/model:1")
BASE = ImageRef.parse("base.example/python:3.11")
OTHER = ImageRef.parse("other.example/x:1")


def _creds(options: RegistryOptions, ref: ImageRef):
    client = options.client_for(ref)
    try:
        creds = client._credentials
        return (creds.username, creds.password) if creds else None
    finally:
        client.close()


def test_explicit_credentials_go_to_the_destination_only():
    options = RegistryOptions(username="pusher", password="push-secret",
                              per_registry={"base.example": ("reader", "base-secret")}).for_host(DEST)
    assert _creds(options, DEST) == ("pusher", "push-secret")
    assert _creds(options, BASE) == ("reader", "base-secret")  # the config's baseImageRegistry, not the flag
    assert _creds(options, OTHER) is None  # the docker config's, if any
    # without a destination the flag's credentials go nowhere
    assert _creds(RegistryOptions(username="pusher", password="push-secret"), BASE) is None


def test_the_destination_registry_is_bound_once():
    options = RegistryOptions(username="u", password="p").for_host(DEST).for_host(OTHER)
    assert options.host == "dest.example"
