"""Clients: the operator's only I/O with the outside world.

``k8s`` is the one module that talks to the Kubernetes API; ``hub`` asks the Hugging Face
Hub for model facts and cards; ``scraper`` reads the engines' /metrics pages.
"""
