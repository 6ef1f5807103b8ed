"""Azure Functions adapters: function_app.py templates per trigger, and the local trigger host.

``python -m triggers --script-root DIR`` indexes DIR/function_app.py with the azure-functions library's own
``get_functions()`` and drives its triggers locally (HTTP now; blob and Service Bus are separate modules to
come). In-image code: imports only the standard library, azure.functions and edgepack.runtime.
"""
