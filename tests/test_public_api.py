"""The library's public surface is what ``__all__`` says, and every public name is documented."""

from __future__ import annotations

import inspect

import edgepack.api as api
import edgepack.errors as errors


def test_api_exports_every_public_function_and_type_it_defines():
    public = {name for name, obj in vars(api).items()
              if not name.startswith("_") and getattr(obj, "__module__", None) == "edgepack.api"}
    assert public <= set(api.__all__)
    # Re-exports are the value types callers need to build arguments.
    assert set(api.__all__) - public == {"KubernetesOptions"}
    assert all(hasattr(api, name) for name in api.__all__)


def test_every_exported_name_has_a_docstring():
    for module in (api, errors):
        for name in module.__all__:
            assert inspect.getdoc(getattr(module, name)), f"{module.__name__}.{name}"


def test_every_error_is_an_edgepack_error_with_a_hint_slot():
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.EdgepackError)
        assert cls("x", hint="do y").hint == "do y"
