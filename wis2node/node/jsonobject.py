"""The one way the node's tools read a JSON object that is not theirs (S3 events, WIS2 events, the GDC)."""

from __future__ import annotations

from typing import Any


def json_object(value: object) -> dict[str, Any]:
    """The value if it is a JSON object, else an empty one: a missing or mistyped member reads as absent."""
    return value if isinstance(value, dict) else {}
