"""Fleet rollouts: a model to many IoT Edge devices in health-gated waves.

``spec`` parses what the operator asks for, ``plan`` splits the fleet into waves and reads each device's reported
state, ``state`` persists a rollout and holds its lease. The controller that drives a hub through them is built
on these.
"""
