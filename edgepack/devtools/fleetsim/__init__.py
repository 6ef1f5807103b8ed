"""A simulated fleet for ``edgepack fleet simulate``: real agents (``device_agents`` on the real device SDK) as the
IoT Edge devices of the local hub, several per process, with traffic and a tally of every input's result.
Development tooling: never in an image."""
