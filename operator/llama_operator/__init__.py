"""llama-operator: size, deploy and run Llama-family LLM endpoints on Kubernetes."""

from importlib import metadata

try:
    __version__ = metadata.version("llama-operator")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+source"
