"""Generated function apps index, with azure-functions' own get_functions(), to what the Functions host expects."""

from __future__ import annotations

import pytest

from edgepack.packagers.functions import render_function_app
from edgepack.targets import parse_target
from triggers.host import function_json, load_app

CASES = {
    "functions-http": ({"auth_level": "function"}, [
        {"direction": "IN", "type": "httpTrigger", "name": "req", "methods": ["POST"], "authLevel": "FUNCTION",
         "route": "score"},
        {"direction": "OUT", "type": "http", "name": "$return"}]),
    "functions-blob": ({"input_path": "input/{blobname}.json", "output_path": "output/{blobname}_out.json"}, [
        {"direction": "OUT", "type": "blob", "name": "outblob", "path": "output/{blobname}_out.json",
         "connection": "AzureWebJobsStorage"},
        {"direction": "IN", "type": "blobTrigger", "name": "inblob", "path": "input/{blobname}.json",
         "connection": "AzureWebJobsStorage"}]),
    "functions-servicebus": ({"input_queue": "%IN_QUEUE%", "output_queue": "scores", "connection": "SB"}, [
        {"direction": "OUT", "type": "serviceBus", "name": "outmsg", "connection": "SB", "queueName": "scores"},
        {"direction": "IN", "type": "serviceBusTrigger", "name": "msg", "connection": "SB",
         "queueName": "%IN_QUEUE%"}]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_generated_app_indexes_to_the_expected_bindings(tmp_path, name):
    options, bindings = CASES[name]
    (tmp_path / "function_app.py").write_bytes(render_function_app(parse_target(name, **options)))
    functions = load_app(str(tmp_path))
    assert [f.name for f in functions] == ["score"]
    assert function_json(functions[0]) == {"scriptFile": "function_app.py", "bindings": bindings}
