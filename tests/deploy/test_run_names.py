"""Run names are container names: nothing is written or read outside the runs folder for any other name."""

from __future__ import annotations

import pytest

from edgepack import api
from edgepack.errors import EdgepackError
from edgepack.home import Home


class _NoEngine:
    """Fails the test if the engine is reached: a bad name must be refused before anything happens."""

    def __getattr__(self, name):
        raise AssertionError(f"the engine was called ({name}) for a bad run name")


@pytest.mark.parametrize("name", ["../../victim", "../x", "a/b", ".hidden", "-x", "x", "na\nme"])
def test_bad_run_names_touch_nothing(tmp_path, name):
    home = Home(tmp_path / "home")
    victim = tmp_path / "victim"
    victim.mkdir()
    for call in (lambda: api.run(home, "img@sha256:" + "0" * 64, daemon=_NoEngine(), name=name),
                 lambda: api.run_keys(home, name), lambda: api.regenerate_run_key(home, name, "secondary"),
                 lambda: api.stop(home, name, daemon=_NoEngine())):
        with pytest.raises(EdgepackError, match="not a container name"):
            call()
    assert list(victim.iterdir()) == [] and not (tmp_path / "home").exists()
