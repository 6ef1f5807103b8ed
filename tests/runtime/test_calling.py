"""run() called as Azure ML's inference server calls it, with the real inference-schema and werkzeug packages:
request headers, decorated parameters, @rawhttp with AMLRequest/AMLResponse, async run, and answers encoded
as Azure ML encodes them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgepack.runtime.calling import CallInfo, query_object
from edgepack.runtime.scoring import Runtime
from edgepack.runtime.settings import RuntimeConfig, RuntimeSetupError

NUMPY_SCHEMA = '''
import numpy as np
from inference_schema.schema_decorators import input_schema, output_schema
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType

def init():
    pass

@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0, 3.0]])))
@input_schema("scale", StandardPythonParameterType(2.0))
@output_schema(StandardPythonParameterType({"sums": [6.0]}))
def run(data, scale=1.0):
    assert isinstance(data, np.ndarray)
    return {"sums": (data.sum(axis=1) * scale).tolist(), "dtype": str(data.dtype)}
'''

PANDAS_SCHEMA = '''
import pandas as pd
from inference_schema.schema_decorators import input_schema
from inference_schema.parameter_types.pandas_parameter_type import PandasParameterType

def init():
    pass

@input_schema("Inputs", PandasParameterType(pd.DataFrame({"a": [1.0], "b": ["x"]})))
def run(Inputs, request_headers):
    return {"columns": list(Inputs.columns), "rows": len(Inputs), "trace": request_headers.get("X-Trace")}
'''

RAW = '''
import json
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse

def init():
    pass

@rawhttp
def run(request):
    if request.method == "GET":
        return AMLResponse(json.dumps({"args": request.args.to_dict(), "path": request.full_path}), 200,
                           {"Access-Control-Allow-Origin": "*", "X-Multi": "a, b"})
    if request.method == "POST":
        if request.files:
            f = request.files["image"]
            return AMLResponse(json.dumps({"file": f.filename, "size": len(f.read())}), 201)
        return AMLResponse(request.get_data()[::-1], 200)
    return AMLResponse("bad method", 500)
'''

PLAIN = '''
import json

def init():
    pass

def run(raw_data, request_headers):
    if raw_data.startswith("a,b"):
        return "csv rows: %d" % len(raw_data.splitlines())
    if raw_data == "none":
        return None
    return json.dumps({"echo": json.loads(raw_data), "agent": request_headers.get("User-Agent")})
'''

ASYNC = '''
import asyncio

def init():
    pass

async def run(raw_data):
    await asyncio.sleep(0)
    return {"awaited": raw_data}
'''


def _runtime(tmp_path, script: str) -> Runtime:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "score.py").write_text(script)
    runtime = Runtime(RuntimeConfig(entry_script=str(src / "score.py"), source_dir=str(src),
                                    model_dir=str(tmp_path), model={"name": "m", "version": 1}))
    runtime.start()
    return runtime


JSON = "application/json"


def test_decorated_parameters_are_converted_by_inference_schema(tmp_path):
    runtime = _runtime(tmp_path, NUMPY_SCHEMA)
    assert runtime.mode == "schema"
    ok = runtime.score(json.dumps({"data": [[1, 2, 3], [4, 5, 6]], "scale": 10, "extra": 1}).encode(), JSON)
    assert ok.status == 200
    assert json.loads(ok.body) == {"sums": [60.0, 150.0], "dtype": "float64"}
    # the default of a parameter the body leaves out
    assert json.loads(runtime.score(b'{"data": [[1, 1, 1]]}', JSON).body)["sums"] == [3.0]
    missing = runtime.score(b'{"rows": []}', JSON)
    assert missing.status == 400
    assert json.loads(missing.body)["error"] == "A value is not provided for the 'data' parameter."
    assert runtime.score(b"[1, 2]", JSON).status == 400
    # a GET passes the query string, values parsed as JSON
    got = runtime.score(b"", None, CallInfo("GET", "/score?data=[[2,2,2]]&scale=0.5"))
    assert json.loads(got.body)["sums"] == [3.0]
    # the swagger comes from the decorators, in every version Azure ML serves
    v2 = runtime.openapi("2")
    assert v2["definitions"]["ServiceInput"]["properties"]["data"]["type"] == "array"
    assert v2["definitions"]["ServiceInput"]["example"] == {"data": [[1.0, 2.0, 3.0]], "scale": 2.0}
    assert v2["definitions"]["ServiceOutput"]["example"] == {"sums": [6.0]}
    assert runtime.openapi("3")["components"]["schemas"]["ServiceInput"]["properties"]["scale"]["type"] == "number"


def test_pandas_parameters_and_request_headers(tmp_path):
    runtime = _runtime(tmp_path, PANDAS_SCHEMA)
    body = json.dumps({"Inputs": [{"a": 1.5, "b": "y"}, {"a": 2.0, "b": "z"}]}).encode()
    result = runtime.score(body, JSON, CallInfo("POST", "/score", {"x-trace": "t-1", "content-type": JSON}))
    assert json.loads(result.body) == {"columns": ["a", "b"], "rows": 2, "trace": "t-1"}


def test_rawhttp_gets_a_werkzeug_request_and_answers_its_amlresponse(tmp_path):
    runtime = _runtime(tmp_path, RAW)
    assert runtime.mode == "raw"
    got = runtime.score(b"", None, CallInfo("GET", "/score?x=1&y=two", {"host": "localhost:5001"}))
    assert got.status == 200
    assert json.loads(got.body) == {"args": {"x": "1", "y": "two"}, "path": "/score?x=1&y=two"}
    assert got.headers["Access-Control-Allow-Origin"] == "*"
    assert got.headers["X-Multi"] == "a, b"
    assert got.headers["x-ms-run-function-failed"] == "False"
    echo = runtime.score(b"abc", "text/plain", CallInfo("POST", "/score", {"content-type": "text/plain"}))
    assert (echo.status, echo.body) == (200, b"cba")
    boundary = "xyz"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + b"\x89PNG1234" + f"\r\n--{boundary}--\r\n".encode()
    ctype = f"multipart/form-data; boundary={boundary}"
    upload = runtime.score(form, ctype, CallInfo("POST", "/score", {"content-type": ctype}))
    assert upload.status == 201 and json.loads(upload.body) == {"file": "a.png", "size": 8}
    assert runtime.score(b"", None, CallInfo("OPTIONS", "/score")).status == 500


def test_answers_are_encoded_as_azure_ml_encodes_them(tmp_path):
    runtime = _runtime(tmp_path, PLAIN)
    agent = CallInfo("POST", "/score", {"user-agent": "pytest"})
    # a returned str is JSON-encoded (a json.dumps() result comes back as a JSON string), None is {}
    answer = runtime.score(b'{"a": 1}', JSON, agent)
    assert json.loads(json.loads(answer.body)) == {"echo": {"a": 1}, "agent": "pytest"}
    assert runtime.score(b"none", "text/plain", agent).body == b"{}"
    csv = runtime.score(b"a,b\n1,2\n", "text/csv", agent)
    assert json.loads(csv.body) == "csv rows: 2"
    assert runtime.score(b"not json", JSON, agent).status == 400


def test_async_run_is_awaited(tmp_path):
    runtime = _runtime(tmp_path, ASYNC)
    assert json.loads(runtime.score(b'{"x": 1}', JSON).body) == {"awaited": '{"x": 1}'}
    assert runtime.typical_cost() == float("inf")  # never scored on the event loop


def test_rawhttp_and_schema_together_is_refused_at_start(tmp_path):
    script = NUMPY_SCHEMA.replace("def init():", "from azureml.contrib.services.aml_request import rawhttp\n\n"
                                               "def init():").replace("@input_schema(\"data\"",
                                                                       "@rawhttp\n@input_schema(\"data\"", 1)
    with pytest.raises(RuntimeSetupError, match="both @rawhttp and inference_schema-decorated"):
        _runtime(tmp_path, script)


def test_query_strings_read_as_azure_ml_reads_them():
    assert query_object("a=1&b=x&a=[2]&c=") == {"a": [1, [2]], "b": "x", "c": ""}
    assert np.array(query_object("data=[[1,2]]")["data"]).shape == (1, 2)


def test_json_nested_too_deeply_is_a_400(tmp_path):
    runtime = _runtime(tmp_path, ASYNC)
    deep = b"[" * 100000 + b"]" * 100000
    result = runtime.score(deep, JSON)
    assert result.status == 400 and b"nested too deeply" in result.body
