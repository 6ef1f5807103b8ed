"""The image labels are one typed definition: what the packagers write is what ``edgepack run`` reads."""

from __future__ import annotations

from edgepack.runtime.labels import ImageLabels


def test_labels_round_trip_and_describe_the_models():
    one = ImageLabels("functions-http", 80, "function", "/api/score", "/", ("python3", "-m", "triggers"),
                      ({"name": "digits", "version": 2, "sha256": "ab"},))
    labels = one.to_labels()
    assert labels["io.edgepack.model.name"] == "digits" and labels["io.edgepack.model.version"] == "2"
    assert labels["org.opencontainers.image.title"] == "digits:2 (functions-http)"
    assert ImageLabels.from_labels(labels) == one
    several = ImageLabels("webservice", 5001, "key", "/score", "/health",
                          models=({"name": "a", "version": 1, "sha256": "x"},
                                  {"name": "b", "version": 3, "sha256": "y"}))
    assert "io.edgepack.model.name" not in several.to_labels() and several.model_name == "image"
    assert ImageLabels.from_labels(several.to_labels()) == several
    assert ImageLabels.from_labels({"maintainer": "someone"}) is None
