"""The fleet rollout's pure core: expressions, waves, device views, and the persisted state with its lease."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest

from edgepack.errors import FleetError, LeaseHeld, RolloutSpecError
from edgepack.fleet.plan import FAILED, FAILING, HEALTHY, OFFLINE, PENDING, plan_waves, view_device
from edgepack.fleet.spec import (AbortPolicy, Condition, WavePolicy, parse_abort, parse_duration, parse_gate,
                                 parse_rings, parse_wave)
from edgepack.fleet.state import RolloutStore


def test_wave_sizes_grow_by_the_factor_and_are_capped():
    assert WavePolicy(5, 2, 500).sizes(200) == [5, 10, 20, 40, 80, 45]
    assert WavePolicy(5, 2, 30).sizes(100) == [5, 10, 20, 30, 30, 5]
    assert WavePolicy(1, 1.5, 10).sizes(12) == [1, 1, 2, 3, 5]
    assert sum(WavePolicy(1, 3, 1000).sizes(1000)) == 1000
    assert parse_wave("start=5,factor=2,max=500") == WavePolicy(5, 2.0, 500)
    assert parse_wave("start=3") == WavePolicy(3, 2.0, 500)


@pytest.mark.parametrize("option,text,where,expected", [
    ("--wave", "start=5,factr=2", 9, "start, factor or max"),
    ("--wave", "start=five", 7, "a whole number"),
    ("--wave", "start=5,max", 9, "KEY=VALUE"),
    ("--gate", "error_rate<0.01,p99<50", 17, "one of error_rate"),
    ("--gate", "error_rate<0.01,p99_ms=50", 23, "METRIC<VALUE"),
    ("--abort", "failed>10,min=20", 1, "failed>P% or min=N"),
    ("--abort", "failed>10%,min=x", 16, "a whole number"),
])
def test_expressions_that_do_not_parse_say_where(option, text, where, expected):
    parse = {"--wave": parse_wave, "--gate": lambda t: parse_gate(t, shadow=False), "--abort": parse_abort}[option]
    with pytest.raises(RolloutSpecError) as info:
        parse(text)
    message = str(info.value)
    assert f"{option} '{text}': at character {where}: expected {expected}" in message
    assert message.splitlines()[-1] == " " * (where - 1) + "^"


def test_gates_aborts_durations_and_rings():
    gate = parse_gate("error_rate<0.01,p99_ms<50,agreement>0.98", shadow=True)
    assert gate == (Condition("error_rate", "<", 0.01), Condition("p99_ms", "<", 50.0),
                    Condition("agreement", ">", 0.98))
    with pytest.raises(RolloutSpecError, match="agreement is measured only in shadow mode"):
        parse_gate("agreement>0.98", shadow=False)
    assert parse_abort("failed>10%,min=20") == AbortPolicy(0.10, 20)
    assert parse_abort("failed>2.5%") == AbortPolicy(0.025, 20)
    assert [parse_duration("--soak", t) for t in ("90", "90s", "5m", "1h", "1h30m")] == [90, 90, 300, 3600, 5400]
    for bad in ("", "5 minutes", "m"):
        with pytest.raises(RolloutSpecError, match="not a duration"):
            parse_duration("--soak", bad)
    assert parse_rings("canary,ring1,all") == ("canary", "ring1", "all")
    with pytest.raises(RolloutSpecError, match="'all' takes every remaining device"):
        parse_rings("all,canary")
    with pytest.raises(RolloutSpecError, match="named once each"):
        parse_rings("canary,canary")


def test_waves_follow_rings_in_a_stable_spread_order():
    devices = {f"dev-{i:03}": ("canary" if i < 4 else "ring1" if i < 40 else None) for i in range(100)}
    waves = plan_waves("model-v2", devices, WavePolicy(5, 2, 500), ("canary", "ring1", "all"))
    assert [(w.ring, len(w.devices)) for w in waves] == [
        ("canary", 4), ("ring1", 5), ("ring1", 10), ("ring1", 20), ("ring1", 1), ("all", 5), ("all", 10),
        ("all", 20), ("all", 25)]
    assert [w.number for w in waves] == list(range(1, 10))
    assert sorted(d for w in waves for d in w.devices) == sorted(devices)
    assert plan_waves("model-v2", devices, WavePolicy(5, 2, 500), ("canary", "ring1", "all")) == waves
    other = plan_waves("model-v3", devices, WavePolicy(5, 2, 500), ("canary", "ring1", "all"))
    assert other[1].devices != waves[1].devices  # another rollout picks other devices first
    assert waves[1].devices != tuple(sorted(waves[1].devices))  # not alphabetical
    only_named = plan_waves("x", devices, WavePolicy(5, 2, 500), ("canary",))
    assert [len(w.devices) for w in only_named] == [4]


def _report(digest: str, **extra):
    return {"model": {"digest": digest, "status": "serving"}, "errorRate": 0.0, "p99Ms": 3.0, **extra}


def test_a_device_is_healthy_only_when_it_serves_the_model_within_the_gate():
    gate = parse_gate("error_rate<0.01,p99_ms<50", shadow=False)
    new = "sha256:" + "2" * 64
    assert view_device("d", _report(new), digest=new, gate=gate, connected=True).state == HEALTHY
    failing = view_device("d", _report(new, errorRate=0.25), digest=new, gate=gate, connected=True)
    assert failing.state == FAILING and failing.reason == "error_rate 0.25 (gate error_rate<0.01)"
    assert view_device("d", _report("sha256:old"), digest=new, gate=gate, connected=True).state == PENDING
    refused = {"model": {"digest": "sha256:old", "status": "failed", "desiredDigest": new, "refused": True,
                         "lastError": "model cnn:2 failed its probe"}}
    failed = view_device("d", refused, digest=new, gate=gate, connected=True)
    assert failed.state == FAILED and "failed its probe" in failed.reason
    transient = {"model": {**refused["model"], "refused": False, "lastError": "downloading version 2: HTTP 503"}}
    retrying = view_device("d", transient, digest=new, gate=gate, connected=True)
    assert retrying.state == PENDING and retrying.reason == "retrying: downloading version 2: HTTP 503"
    assert view_device("d", _report(new), digest=new, gate=gate, connected=False).state == OFFLINE
    assert view_device("d", {"model": {"digest": new}}, digest=new, gate=gate, connected=True).state == PENDING
    shadow = parse_gate("agreement>0.98", shadow=True)
    assert view_device("d", _report(new, shadow={"agreement": 0.9}), digest=new, gate=shadow,
                       connected=True).state == FAILING


def test_state_is_replaced_atomically_and_names_are_unique(tmp_path):
    store = RolloutStore(tmp_path / "fleet")
    store.create("model-v2", {"phase": "running", "step": 1})
    with pytest.raises(FleetError, match="the name is in use"):
        store.create("model-v2", {"phase": "running"})
    store.save("model-v2", {"phase": "running", "step": 2})
    assert store.load("model-v2") == {"phase": "running", "step": 2}
    assert store.names() == ["model-v2"]
    assert not list((tmp_path / "fleet").glob("*.partial"))
    assert oct((tmp_path / "fleet" / "model-v2.json").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(FleetError, match="no such rollout"):
        store.load("other")
    with pytest.raises(RolloutSpecError, match="not a valid name"):
        store.load("../escape")


def _hold(folder, ready):
    with RolloutStore(folder).lease("model-v2"):
        ready.set()
        time.sleep(60)


def test_one_controller_holds_a_lease_and_a_killed_one_frees_it(tmp_path):
    store = RolloutStore(tmp_path)
    ready = multiprocessing.Event()
    holder = multiprocessing.Process(target=_hold, args=(tmp_path, ready))
    holder.start()
    try:
        assert ready.wait(20)
        with pytest.raises(LeaseHeld, match=f"pid {holder.pid} on"):
            with store.lease("model-v2"):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        with store.lease("model-v2"):  # the kernel dropped the dead controller's lock
            pass
    finally:
        if holder.is_alive():
            holder.kill()
