"""``azureml.contrib.services``: raw HTTP access for scoring scripts (``aml_request``, ``aml_response``)."""
