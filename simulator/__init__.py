"""A deterministic fleet of key-account and feeder meters, and its MQTT publisher.

``simulator.fleet`` is pure (no I/O besides writing the registry CSV on request);
``simulator.publish`` puts the fleet on the wire per the MQTT contract (docs/mqtt.md).
"""
