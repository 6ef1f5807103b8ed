"""``azureml.monitoring.ModelDataCollector``: data collection as a service without a storage account has it.

Collection is off, as in Azure ML when ``AML_MODEL_DC_STORAGE_ENABLED`` is not set: ``collect()`` returns None.
With ``AML_MODEL_DC_DEBUG=true`` the rows are written to stdout as CSV, as Azure ML's debug mode does.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from typing import Any


class ModelDataCollector:
    """Collects a model's inputs or predictions (here: to stdout in debug mode, else nowhere)."""

    def __init__(self, model_name: str, designation: str = "default", feature_names: list | None = None,
                 workspace: str = "default/default/default", webservice_name: str = "default",
                 model_version: str = "default", collection_name: str = "default") -> None:
        self.model_name, self.designation, self.feature_names = model_name, designation, feature_names
        self._debug = os.environ.get("AML_MODEL_DC_DEBUG", "").lower() == "true"
        if not self._debug:
            print("Data collection is not enabled. Set environment variable AML_MODEL_DC_DEBUG to 'true' to "
                  "write the collected data to the log.")

    def collect(self, input_data: Any, user_correlation_id: str = "") -> Any:
        """Collect ``input_data`` (a list, numpy array or pandas DataFrame)."""
        if not self._debug:
            return None
        rows = input_data.values.tolist() if hasattr(input_data, "values") and hasattr(input_data, "columns") \
            else input_data.tolist() if hasattr(input_data, "tolist") else list(input_data)
        out = io.StringIO()
        writer = csv.writer(out)
        if self.feature_names:
            writer.writerow(self.feature_names)
        for row in rows:
            writer.writerow(row if isinstance(row, (list, tuple)) else [row])
        sys.stdout.write(f"[{self.model_name}/{self.designation}]\n{out.getvalue()}")
        return None

    def add_correlations(self, input_data: Any, correlations: Any) -> Any:
        """The data unchanged (there are no correlation headers without collection)."""
        return input_data
