"""WIS2 Notification Messages (WNM 1.0): what the node announces for each published file."""

from __future__ import annotations

import base64
import datetime
import hashlib
import uuid

CONFORMS_TO = "http://wis.wmo.int/spec/wnm/1/conf/core"
# Data travels inside the message only when its encoded form is at most this long (WNM 1.0:
# content.value maxLength 4096, "the limit takes into account the data encoding used").
INLINE_LIMIT = 4096


def build_notification(
    *,
    data_id: str,
    href: str,
    content: bytes,
    media_type: str,
    observed: datetime.datetime | None = None,
    period: tuple[datetime.datetime, datetime.datetime] | None = None,
    metadata_id: str | None = None,
    rel: str = "canonical",
    pubtime: datetime.datetime | None = None,
    gts: dict | None = None,
) -> dict:
    """A WNM for one file: UUID id, pubtime, data_id, time, link (canonical/update/deletion), sha512.

    The pubtime keeps its microseconds, so that an update announced within the second of the
    previous notification still has a later pubtime (WNM: a newer pubtime marks a newer version).
    """
    now = pubtime or datetime.datetime.now(datetime.UTC)
    properties: dict = {"data_id": data_id, "pubtime": rfc3339_precise(now)}
    if period:
        properties["start_datetime"], properties["end_datetime"] = _rfc3339(period[0]), _rfc3339(period[1])
    else:
        properties["datetime"] = _rfc3339(observed) if observed else None
    properties.update(
        {
            "integrity": {"method": "sha512", "value": base64.b64encode(hashlib.sha512(content).digest()).decode()},
        }
    )
    if metadata_id:
        properties["metadata_id"] = metadata_id
    if gts:
        properties["gts"] = gts  # GTS headers, for the WIS2-to-GTS gateways (an additional property)
    encoded = base64.b64encode(content).decode()
    if len(encoded) <= INLINE_LIMIT and rel != "deletion":
        properties["content"] = {"encoding": "base64", "value": encoded, "size": len(content)}
    return {
        "id": str(uuid.uuid4()),
        "conformsTo": [CONFORMS_TO],
        "type": "Feature",
        "geometry": None,
        "properties": properties,
        "links": [{"href": href, "rel": rel, "type": media_type, "length": len(content)}],
    }


def verify_integrity(message: dict, content: bytes) -> bool:
    """Whether downloaded bytes match the message's integrity value."""
    integrity = message["properties"]["integrity"]
    digest = hashlib.new(integrity["method"], content).digest()
    return base64.b64encode(digest).decode() == integrity["value"]


def rfc3339_precise(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
