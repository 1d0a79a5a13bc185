"""The Gateway API HTTPRoute the operator writes, validated for any test.

Gateway API's CRDs cannot be installed here, so an HTTPRoute is validated against
``tests/fixtures/gateway/httproute.schema.json``, a JSON Schema hand-written from the
Gateway API v1 reference for the parts llama-operator writes (see its ``$comment``: where
it is stricter or looser than the CRD). Import it from any test::

    from gateway import validate_httproute

    validate_httproute(route)  # raises jsonschema.ValidationError
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

import jsonschema

SCHEMA_PATH = pathlib.Path(__file__).parent / "fixtures" / "gateway" / "httproute.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
jsonschema.Draft202012Validator.check_schema(SCHEMA)
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


def httproute_errors(obj: Mapping[str, Any]) -> list[jsonschema.ValidationError]:
    """Every way ``obj`` fails the schema (empty when it is valid)."""
    return list(VALIDATOR.iter_errors(obj))


def validate_httproute(obj: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` (the most relevant error) unless ``obj`` is
    an HTTPRoute the API server would take, as far as the schema knows."""
    error = jsonschema.exceptions.best_match(VALIDATOR.iter_errors(obj))
    if error is not None:
        raise error
