"""Function App deploys, asserted on the ARM requests recorded at the azure-core transport seam."""

from __future__ import annotations

import pytest

from edgepack.deploy import functionapp
from edgepack.errors import DeployError
from tests.fakes import FakeArm, FakeCredential

SUB, RG = "00000000-0000-0000-0000-000000000001", "rg-models"
IMAGE = "myacr.azurecr.io/digits-fn@sha256:" + "b" * 64
PLAN = {"id": f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Web/serverfarms/ep1", "name": "ep1",
        "location": "westeurope", "kind": "elastic", "properties": {"reserved": True},
        "sku": {"name": "EP1", "tier": "ElasticPremium"}}


def _options(**extra) -> functionapp.FunctionAppOptions:
    base = dict(subscription=SUB, resource_group=RG, name="digits", plan="ep1", image=IMAGE,
                registry_username="puller", registry_password="pull-secret-9",
                settings={"AzureWebJobsStorage": "DefaultEndpointsProtocol=https;AccountKey=c2VjcmV0"},
                required_settings=("AzureWebJobsStorage",))
    return functionapp.FunctionAppOptions(**{**base, **extra})


def _deploy(arm: FakeArm, options: functionapp.FunctionAppOptions, adapter=None) -> str:
    client = functionapp.make_client(FakeCredential(), SUB, adapter or arm)
    return functionapp.deploy(client, options)


def test_new_app_is_created_as_a_linux_container_function_app():
    arm = FakeArm(plan=PLAN)
    site = _deploy(arm, _options())
    assert site.endswith("/providers/Microsoft.Web/sites/digits")
    calls = [(m, url.split("?")[0].split("/providers/Microsoft.Web/")[1]) for m, url, _, _ in arm.requests]
    assert calls == [("GET", "serverfarms/ep1"), ("POST", "sites/digits/config/appsettings/list"),
                     ("PUT", "sites/digits"), ("PUT", "sites/digits/config/appsettings")]
    assert all("api-version=" in url for _, url, _, _ in arm.requests)
    assert all(h["Authorization"] == "Bearer fake-arm-token" for *_, h in arm.requests)
    body = arm.requests[2][2]
    assert body["kind"] == "functionapp,linux,container"
    assert body["properties"]["reserved"] is True
    assert body["properties"]["serverFarmId"] == PLAN["id"]
    assert body["properties"]["siteConfig"]["linuxFxVersion"] == f"DOCKER|{IMAGE}"
    settings = arm.requests[3][2]["properties"]
    assert settings["FUNCTIONS_EXTENSION_VERSION"] == "~4"
    assert settings["WEBSITES_ENABLE_APP_SERVICE_STORAGE"] == "false"
    assert settings["DOCKER_REGISTRY_SERVER_URL"] == "https://myacr.azurecr.io"
    assert settings["DOCKER_REGISTRY_SERVER_USERNAME"] == "puller"
    assert settings["DOCKER_REGISTRY_SERVER_PASSWORD"] == "pull-secret-9"


def test_existing_app_settings_are_merged_not_clobbered():
    arm = FakeArm(plan=PLAN, sites={"digits": {"APPINSIGHTS_KEY": "keep-me", "FUNCTIONS_EXTENSION_VERSION": "~3",
                                               "AzureWebJobsStorage": "already-there"}})
    _deploy(arm, _options(settings={}))
    methods = [(m, url.split("?")[0].rsplit("/sites/", 1)[1]) for m, url, _, _ in arm.requests[1:]]
    assert methods == [("POST", "digits/config/appsettings/list"), ("PATCH", "digits/config/web"),
                       ("PUT", "digits/config/appsettings")]
    assert arm.requests[2][2]["properties"]["linuxFxVersion"] == f"DOCKER|{IMAGE}"
    written = arm.sites["digits"]
    assert written["APPINSIGHTS_KEY"] == "keep-me" and written["AzureWebJobsStorage"] == "already-there"
    assert written["FUNCTIONS_EXTENSION_VERSION"] == "~4"


@pytest.mark.parametrize("options,text", [
    ({"image": "myacr.azurecr.io/digits-fn:1"}, "a tag without a digest"),
    ({"settings": {}, "required_settings": ("AzureWebJobsStorage", "SB_CONN")},
     "AzureWebJobsStorage, SB_CONN needed by the function triggers are not set"),
])
def test_bad_options_fail_before_any_write(options, text):
    arm = FakeArm(plan=PLAN)
    with pytest.raises(DeployError, match=text) as info:
        _deploy(arm, _options(**options))
    assert info.value.hint
    assert [m for m, *_ in arm.requests if m in ("PUT", "PATCH")] == []


def test_consumption_plans_are_refused():
    arm = FakeArm(plan={**PLAN, "sku": {"name": "Y1", "tier": "Dynamic"}})
    with pytest.raises(DeployError, match="cannot run a custom Linux image"):
        _deploy(arm, _options())


def test_dry_run_sends_reads_records_writes_and_redacts_secrets():
    arm = FakeArm(plan=PLAN)
    dry = functionapp.DryRunAdapter(arm)
    _deploy(arm, _options(), adapter=dry)
    assert [m for m, *_ in arm.requests] == ["GET", "POST"]  # only the reads reached ARM
    assert [r.method for r in dry.recorded] == ["PUT", "PUT"]
    printed = str([functionapp.redact_settings(r.body) for r in dry.recorded])
    assert "pull-secret-9" not in printed and "AccountKey" not in printed
    assert "DOCKER|" + IMAGE in printed and "'FUNCTIONS_EXTENSION_VERSION': '~4'" in printed
