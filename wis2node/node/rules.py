"""What an S3 event may become: which events are taken, and a key's topic, path, media type, time and place.

Pure (no AWS, no broker, no filesystem writes): every rule either returns what the event
becomes or raises Rejected with the value and what is expected (the agent puts the key in
front), so a bad event is parked in
the dead-letter queue with its reason on its first receive. Uploaders, and anyone who can send
to the queue, are hostile: nothing here trusts a key, a metadata value or a content type.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_plus

from wis2node.node.jsonobject import json_object
from wis2node.node.media_types import media_type  # noqa: F401 (a rule of its own, shared with nginx)

# A topic level, as WMO's conventions (wmo-im/wis2-topic-hierarchy, /req/core/conventions) and its
# registered levels have them: lowercase ASCII letters and digits, words joined by '-'. No registered
# level uses '_', but the conventions do not forbid it and it is T.50 and lowercase, so it is let
# through here for `experimental` sub-topics; pywis-topics then refuses it at any registered level.
TOPIC_LEVEL = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
# A published file's name: letters, digits and ._- (WMO file names such as A_SMAQ01EXMP241200.bufr4),
# never a leading dot (no hidden files, no '.' or '..'), at most what a Linux filesystem allows.
FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
FILE_NAME_MAX = 255
KEY_MAX = 1024  # S3's own limit, in bytes
# The link's media type: wis2node.node.media_types, the one table nginx serves the same files with. The
# uploader's Content-Type is never used: it could make a link announce text/html.
# RFC 3339 date-time; a time without an offset is taken as UTC, as uploaders have always sent it.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})?")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# A WCMP2 identifier or a metadata-id attribute: printable ASCII, no spaces.
_IDENTIFIER = re.compile(r"[\x21-\x7e]+")


class Rejected(Exception):
    """This event can never be published as it is: park it in the dead-letter queue with this reason."""


@dataclass(frozen=True)
class Event:
    """An S3 event the node takes: an object of its bucket created or removed."""

    key: str
    deleted: bool
    size: int = 0

    @property
    def is_metadata(self) -> bool:
        return self.key.startswith("metadata/")


def accept_record(record: object, bucket: str) -> Event:
    """Only S3's own events about the node's bucket; anything else sent to the queue is refused."""
    if not isinstance(record, dict):
        raise Rejected(f"record {_shown(record)}: expected an S3 event record (a JSON object)")
    source = record.get("eventSource")
    if source != "aws:s3":
        raise Rejected(f"eventSource={_shown(source)}: only S3 events (aws:s3) are taken")
    s3 = json_object(record.get("s3"))
    name = json_object(s3.get("bucket")).get("name")
    if name != bucket:
        raise Rejected(f"bucket={_shown(name)}: only events of the node's bucket {bucket!r} are taken")
    event_name = record.get("eventName")
    if not isinstance(event_name, str) or not event_name.startswith(("ObjectCreated:", "ObjectRemoved:")):
        raise Rejected(f"eventName={_shown(event_name)}: expected ObjectCreated:* or ObjectRemoved:*")
    obj = json_object(s3.get("object"))
    raw_key = obj.get("key")
    if not isinstance(raw_key, str) or not raw_key:
        raise Rejected(f"s3.object.key={_shown(raw_key)}: expected the object's key")
    key = unquote_plus(raw_key)
    if len(key.encode("utf-8", "surrogatepass")) > KEY_MAX:
        raise Rejected(f"key {_shown(key)}...: over S3's {KEY_MAX} bytes")
    deleted = event_name.startswith("ObjectRemoved:")
    size = obj.get("size", 0)
    if deleted:
        size = 0
    elif isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise Rejected(f"{key}: s3.object.size={_shown(size)}: expected a number of bytes")
    return Event(key=key, deleted=deleted, size=size)


def topic_root(centre_id: str, channel: str = "origin") -> str:
    """The centre's topic root on a channel (origin, cache or monitor): the one place it is built."""
    return f"{channel}/a/wis2/{centre_id}"


def topic_for(key: str, centre_id: str) -> str:
    """The key convention: data/<topic below the centre-id>/<file>, or metadata/<file>."""
    parts = key.split("/")
    if len(parts) < 2 or parts[0] not in ("data", "metadata"):
        raise Rejected("expected data/<topic below the centre-id>/<file> or metadata/<file>")
    if parts[0] == "metadata" and len(parts) != 2:
        raise Rejected("discovery metadata lives directly under metadata/")
    for level in parts[1:-1]:
        if not TOPIC_LEVEL.fullmatch(level):
            raise Rejected(
                f"topic level {level!r} is not allowed: expected lowercase a-z and 0-9, "
                "words joined by '-' (or '_' under experimental); no empty, '.' or '..' level"
            )
    check_file_name(parts[-1])
    if parts[0] == "metadata":
        return f"{topic_root(centre_id)}/metadata"
    return f"{topic_root(centre_id)}/{'/'.join(parts[:-1])}"


def check_file_name(name: str) -> None:
    """A published file's name: letters, digits and ._-, no leading dot, at most 255 bytes."""
    if not FILE_NAME.fullmatch(name):
        raise Rejected(
            f"file name {name!r} is not allowed: expected letters, digits, '.', '_' and '-', not starting with a dot"
        )
    if len(name) > FILE_NAME_MAX:
        raise Rejected(f"file name of {len(name)} characters, over {FILE_NAME_MAX}")


def public_path(public_dir: Path, key: str) -> Path:
    """Where a key's file is served from; refused unless it resolves inside the public folder."""
    root = public_dir.resolve()
    target = (root / key).resolve()  # follows any symbolic link already on the way
    # the key exactly, not what pathlib makes of it ('a/./b' is 'a/b' to it)
    if target == root or not target.is_relative_to(root) or str(target) != os.path.join(root, key):
        raise Rejected(f"resolves to {target}, not a file of its own inside the public folder {root}")
    return target


# A key uploaded again is announced by an update whose link names that version's own copy, served
# beside the key as <folder>/_versions/<first 32 hex digits of its sha512>/<file name>: the key keeps
# serving the latest version, and a client following an older notification still gets the bytes
# its integrity value describes. No topic level starts with '_', so no uploaded key is ever there.
VERSIONS = "_versions"


def version_key(key: str, sha512_hex: str) -> str:
    """Where one version of a data key is served (content-addressed: a redelivered event finds the same)."""
    folder, name = key.rsplit("/", 1)
    return f"{folder}/{VERSIONS}/{sha512_hex[:32]}/{name}"


def observation_time(attributes: dict) -> dict:
    """Observation time from the object's metadata: datetime, or start-datetime and end-datetime, in UTC."""
    start, end = _moment(attributes, "start-datetime"), _moment(attributes, "end-datetime")
    if start or end:
        if not (start and end):
            raise Rejected("object metadata: start-datetime and end-datetime go together")
        if start > end:
            raise Rejected(
                f"object metadata start-datetime={attributes['start-datetime']!r} is after "
                f"end-datetime={attributes['end-datetime']!r}"
            )
        return {"period": (start, end)}
    return {"observed": _moment(attributes, "datetime")}


def _moment(attributes: dict, name: str) -> datetime.datetime | None:
    value = attributes.get(name)
    if not value:
        return None
    expected = f"object metadata {name}={_shown(value)}: expected an RFC 3339 time (2026-11-24T12:00:00Z)"
    if not _RFC3339.fullmatch(value):
        raise Rejected(expected)
    try:
        moment = datetime.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        if not moment.tzinfo:
            moment = moment.replace(tzinfo=datetime.UTC)
        return moment.astimezone(datetime.UTC)
    except (ValueError, OverflowError):  # a 13th month, or a time that leaves years 1-9999 in UTC
        raise Rejected(f"{expected}, within years 1 to 9999 in UTC") from None


def point(value: str) -> dict:
    """A GeoJSON Point from the geometry attribute 'longitude,latitude[,height]': finite numbers only."""
    expected = (
        f"object metadata geometry={_shown(value)}: expected 'longitude,latitude[,height]', "
        "finite decimal numbers, longitude -180 to 180 and latitude -90 to 90"
    )
    parts = [part.strip() for part in value.split(",")]
    if len(parts) not in (2, 3) or not all(_DECIMAL.fullmatch(part) for part in parts):
        raise Rejected(expected)
    coordinates = [float(part) for part in parts]
    if not all(math.isfinite(c) for c in coordinates) or not (
        -180 <= coordinates[0] <= 180 and -90 <= coordinates[1] <= 90
    ):
        raise Rejected(expected)
    return {"type": "Point", "coordinates": coordinates}


def cache_flag(attributes: dict) -> bool | None:
    """The cache attribute: false keeps Global Caches from caching the file; true or absent is the default."""
    value = attributes.get("cache")
    if value is None or value.lower() == "true":
        return None
    if value.lower() == "false":
        return False
    raise Rejected(f"object metadata cache={_shown(value)}: expected true or false")


def metadata_id(attributes: dict) -> str | None:
    """The dataset a data file belongs to (its discovery metadata record's id), if it says."""
    value = attributes.get("metadata-id")
    if value is None:
        return None
    if not _IDENTIFIER.fullmatch(value):
        raise Rejected(
            f"object metadata metadata-id={_shown(value)}: expected a WCMP2 identifier (printable ASCII, no spaces)"
        )
    return value


def record_id(content: bytes) -> str:
    """A discovery metadata record's id."""
    try:
        value = json.loads(content)["id"]
    except (ValueError, KeyError, TypeError):
        raise Rejected("not a WCMP2 record (JSON with an id)") from None
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise Rejected(f"record id {_shown(value)}: expected a WCMP2 identifier (printable ASCII, no spaces)")
    return value


def _shown(value: object, most: int = 100) -> str:
    """A hostile value in a reason: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= most else f"{text[:most]}..."


def to_json(message: dict) -> str:
    """Strict JSON (no NaN or Infinity, which are not JSON): what the node puts on the wire."""
    try:
        return json.dumps(message, allow_nan=False)
    except ValueError as err:
        raise Rejected(f"notification is not strict JSON: {err}") from None
