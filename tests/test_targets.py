"""Target parsing: names, options that fit, and clear errors for the rest."""

from __future__ import annotations

import pytest

from edgepack.errors import ConfigError
from edgepack.targets import FunctionsHttpTarget, WebServiceTarget, parse_target


def test_webservice_defaults_to_key_auth():
    assert parse_target("webservice") == WebServiceTarget(auth=True)
    assert parse_target("webservice", no_auth=True) == WebServiceTarget(auth=False)


def test_functions_http_auth_levels():
    assert parse_target("functions-http") == FunctionsHttpTarget(auth_level="function")
    assert parse_target("functions-http", auth_level="ADMIN").auth_level == "admin"


@pytest.mark.parametrize("name,kwargs,text", [
    ("functions-http", {"auth_level": "root"}, "--auth-level: 'root' is not one of"),
    ("functions-http", {"no_auth": True}, "--no-auth: applies to webservice only"),
    ("webservice", {"auth_level": "function"}, "--auth-level: applies to functions-http only"),
])
def test_options_that_do_not_fit_are_listed(name, kwargs, text):
    with pytest.raises(ConfigError, match=text):
        parse_target(name, **kwargs)


def test_planned_and_unknown_targets_say_so():
    with pytest.raises(ConfigError, match="not available in this version"):
        parse_target("iot-edge")
    with pytest.raises(ConfigError, match="unknown target") as info:
        parse_target("lambda")
    assert "webservice" in info.value.hint
