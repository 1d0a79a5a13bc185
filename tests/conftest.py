"""Test-wide guarantees: no test reaches the Hugging Face Hub or any other network.

Set at import, before anything imports huggingface_hub (it reads these once).
"""

import os
import pathlib

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.setdefault("HF_HUB_CACHE", str(FIXTURES / "hf-cache"))
os.environ.pop("HF_TOKEN", None)
