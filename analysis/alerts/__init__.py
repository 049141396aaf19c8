"""Alerts: the engine that decides what to tell whom, its outbox, and the channels that deliver it."""
