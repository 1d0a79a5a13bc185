"""Licensing: which licence a model carries, what it asks of a deployment, and the gate.

``terms`` is the registry of licences (NOTICE sentences, use policies) and detection from a
model card; ``gating`` decides whether the serving pods may be created. Pure.
"""
