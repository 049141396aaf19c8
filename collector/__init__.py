"""MQTT intake: topic and payload contract, validation, dead letters, batched writes."""
