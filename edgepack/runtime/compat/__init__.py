"""What scoring scripts import from Azure ML's SDK and inference server, without them.

The folder holding this file is put on ``sys.path`` by the runtime (after the image's own packages), so
``import azureml.core.model`` finds the modules below unless a real Azure ML package is installed. They carry
only what a scoring script uses inside a deployed service:

- ``azureml.core.model.Model.get_model_path`` (and ``azureml.core.Model``): the local lookup of a deployed
  service, under ``$AML_APP_ROOT/azureml-models/NAME/VERSION``, as azureml-core does it;
- ``azureml.contrib.services.aml_request`` (``rawhttp``, ``AMLRequest``) and ``aml_response`` (``AMLResponse``):
  werkzeug's request and response, as Azure ML's inference server gives them (werkzeug is added to the image
  when a script imports these);
- ``azureml.monitoring.ModelDataCollector``: collection is off unless ``AML_MODEL_DC_DEBUG=true``, which writes
  the collected rows to stdout, as Azure ML does without a storage account.

Everything else in the SDK talks to a workspace and is refused at package time.
"""

import os

PATH = os.path.dirname(os.path.abspath(__file__))
