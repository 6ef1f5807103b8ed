"""edgepack profile end to end: a registered model served by the real runtime process, loaded over loopback."""

from __future__ import annotations

import json

from tests.project import make_model, make_project, run_cli


def _register(tmp_path, capsys) -> None:
    model = make_model(tmp_path / "m" / "model.onnx", seed=5)
    assert run_cli(["model", "register", "tiny", str(model)], capsys)[0] == 0


def test_profile_measures_each_level_and_recommends(tmp_path, edgepack_home, capsys):
    _register(tmp_path, capsys)
    config = make_project(tmp_path / "proj")
    sample = tmp_path / "req.json"
    sample.write_text(json.dumps({"data": [[1.0, 2.0, 3.0, 4.0]]}))
    code, out, err = run_cli(["profile", "--model", "tiny:1", "--inference-config", str(config), "--sample",
                              str(sample), "--concurrency", "1,3", "--seconds", "0.5", "--json"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["model"] == "tiny:1" and [lv["concurrency"] for lv in report["levels"]] == [1, 3]
    for level in report["levels"]:
        assert level["requests"] > 20 and level["errors"] == 0 and level["rps"] > 0
        assert 0 < level["p50_ms"] <= level["p99_ms"] and level["cpu_cores"] > 0
        assert level["peak_rss_bytes"] > 10 << 20  # python + numpy + onnxruntime
    rec = report["recommendation"]
    assert rec["cpu"] >= 0.1 and rec["memory_gb"] >= 0.1 and rec["concurrency"] in (1, 3)
    assert 0 < report["startup_seconds"] < 60
    code, out, _ = run_cli(["profile", "--model", "tiny", "--inference-config", str(config), "--sample", str(sample),
                            "--concurrency", "2", "--seconds", "0.3"], capsys)
    assert code == 0 and "recommended: cpu " in out and "concurrency" in out.splitlines()[0]


def test_profile_errors_name_the_cause(tmp_path, edgepack_home, capsys):
    _register(tmp_path, capsys)
    config = make_project(tmp_path / "proj")
    refused = tmp_path / "bad.json"
    refused.write_text(json.dumps({"rows": [1]}))
    code, _, err = run_cli(["profile", "--model", "tiny:1", "--inference-config", str(config), "--sample",
                            str(refused), "--seconds", "0.2"], capsys)
    assert code == 1 and "scoring sample 1: the runtime answered 400" in err and "missing required field" in err
    assert "hint:" in err and "Traceback" not in err
    broken = tmp_path / "proj" / "src" / "score.py"
    broken.write_text(broken.read_text().replace("def init():\n", "def init():\n    import no_such_module_here\n"))
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"data": [[1.0, 2.0, 3.0, 4.0]]}))
    code, _, err = run_cli(["profile", "--model", "tiny:1", "--inference-config", str(config), "--sample", str(good)],
                           capsys)
    assert code == 1 and "no_such_module_here" in err and "install the model's requirements" in err
    code, _, err = run_cli(["profile", "--model", "tiny:1", "--inference-config", str(config), "--sample",
                            str(tmp_path / "missing.json")], capsys)
    assert code == 1 and "reading sample" in err
    code, _, err = run_cli(["profile", "--model", "tiny:1", "--inference-config", str(config), "--sample", str(good),
                            "--concurrency", "0,x"], capsys)
    assert code == 2 and "--concurrency" in err
