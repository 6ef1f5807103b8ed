"""The package-time check that the image provides what the entry script imports."""

from __future__ import annotations

import pytest

from edgepack.build import imports
from edgepack.errors import PackagingError

SCRIPT = '''
import os, json
import numpy as np
from sklearn.linear_model import Ridge
from azureml.core.model import Model
import helpers

try:
    import torch
except ImportError:
    torch = None


def init():
    import joblib
'''


def test_missing_imports_are_named_with_the_packages_to_add(tmp_path):
    (tmp_path / "score.py").write_text(SCRIPT)
    (tmp_path / "helpers.py").write_text("")
    site = tmp_path / "site"
    (site / "numpy").mkdir(parents=True)
    (site / "numpy-2.0.dist-info").mkdir()
    base = frozenset({"os", "json"})
    assert imports.missing_imports(tmp_path / "score.py", source_dir=tmp_path, sites=[site],
                                   base_modules=base) == ["joblib", "sklearn"]
    with pytest.raises(PackagingError) as info:
        imports.check(tmp_path / "score.py", source_dir=tmp_path, sites=(site,), base_modules=base, base="b:1")
    assert info.value.message == ("packaging 'score.py': it imports joblib, sklearn, which neither the environment "
                                  "nor the base image b:1 provides")
    assert "sklearn (package scikit-learn)" in info.value.hint
    # a base whose Python library was not found is not checked against
    imports.check(tmp_path / "score.py", source_dir=tmp_path, sites=(site,), base_modules=frozenset(), base="b:1")
