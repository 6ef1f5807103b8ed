"""``edgepack profile``: run a model's entry script under load at a few concurrencies and recommend the CPU and
memory to deploy it with (what Azure ML's ``az ml model profile`` did in the cloud)."""
