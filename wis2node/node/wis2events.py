"""WIS2 Monitoring Events (WMEs): read the ones Global Services publish, build the node's own.

A WME is a CloudEvent (wmo-im/wis2-monitoring-events). Events seen in the wild use `type` values
beyond the specification, so incoming events are matched on `subject` and `data.severity` only;
the node's own events are validated against the specification's schema, pinned in
wis2node/node/data/wis2-event-message-bundled.json (see wis2node/data/README.md).
"""

from __future__ import annotations

import datetime
import json
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from wis2node.node.jsonobject import json_object

SEVERITIES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ALARMING = ("ERROR", "CRITICAL")
SCHEMA_FILE = Path(__file__).parent / "data" / "wis2-event-message-bundled.json"
DATASCHEMA = "https://schemas.wmo.int/wme/1.0.0/schemas/wis2-event-message-bundled.json"
CORE = "http://wis.wmo.int/spec/wme/1/conf/monitoring-event-message-core"
WME_TYPE = "int.wmo.wis.wme.event"
OUTAGE_TITLE = "Data outage notice"
CANCELLED_TITLE = "Data outage notice cancelled"
MAX_TEXT = 2000  # characters of a title or description kept from an event (alerts stay readable)


class Malformed(ValueError):
    """Not a WME the watcher can use: logged and ignored."""


@dataclass(frozen=True)
class Event:
    id: str
    source: str  # the Global Service (or centre) that said it
    subject: str
    severity: str
    title: str
    description: str
    time: str
    channel: str = ""
    ref: str = ""

    @property
    def key(self) -> str:
        """What identifies the event across brokers (each Global Broker relays the same message)."""
        return f"{self.source}/{self.id}"


def parse(payload: bytes) -> Event:
    """The fields an alert needs, or Malformed saying what is wrong."""
    if len(payload) > 256 * 1024:
        raise Malformed(f"{len(payload)} bytes: too large for a WME")
    try:
        message = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as err:
        raise Malformed(f"not JSON: {err}") from None
    if not isinstance(message, dict):
        raise Malformed("not a JSON object")
    data = message.get("data")
    if not isinstance(data, dict):
        raise Malformed("no data object")
    strings: dict[str, str] = {}
    for name in ("id", "source", "subject"):
        value = message.get(name)
        if not isinstance(value, str) or not value.strip():
            raise Malformed(f"{name}: missing or not a string")
        strings[name] = value
    severity = data.get("severity")
    if severity not in SEVERITIES:
        raise Malformed(f"data.severity: {str(severity)[:40]!r} is not one of {', '.join(SEVERITIES)}")
    content = json_object(data.get("content"))
    title = content.get("title")
    if not isinstance(title, str) or not title.strip():
        links = data.get("links")
        if not (isinstance(links, list) and links and isinstance(links[0], dict)):
            raise Malformed("data.content.title missing and no links")
        title = f"event with a link: {str(links[0].get('href', ''))[:200]}"
    exception = json_object(content.get("exception"))
    description = content.get("description") or content.get("detail") or exception.get("description") or ""
    when = message.get("time")
    return Event(
        id=strings["id"][:200],
        source=strings["source"][:200],
        subject=strings["subject"][:200],
        severity=severity,
        title=title.strip()[:MAX_TEXT],
        description=str(description)[:MAX_TEXT],
        time=when if isinstance(when, str) else "",
        channel=str(content.get("channel") or "")[:500],
        ref=str(data.get("ref") or "")[:200],
    )


@lru_cache(maxsize=1)
def _validator():
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


def schema_errors(message: dict) -> list[str]:
    """What the pinned WME schema says is wrong with a message (empty: valid)."""
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '(top)'}: {error.message}"
        for error in _validator().iter_errors(message)
    ]


def _timestamp(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def outage_notice(
    centre_id: str,
    start: datetime.datetime | None,
    end: datetime.datetime,
    message: str,
    channel: str = "",
    now: datetime.datetime | None = None,
    ref: str = "",
) -> dict:
    """A WME like the specification's examples/wmem-wis2node-outage.json (source = subject = the centre).

    With ref: the notice that withdraws the earlier one of that id.
    """
    now = now or datetime.datetime.now(datetime.UTC)
    content = {"title": CANCELLED_TITLE if ref else OUTAGE_TITLE, "description": message}
    if channel:
        content["channel"] = channel
    data = {
        "conformsTo": [CORE],
        "severity": "INFO",
        "time": {"interval": [_timestamp(start) if start else "..", _timestamp(end)]},
        "content": content,
    }
    if ref:
        data["ref"] = ref
    return {
        "id": str(uuid.uuid4()),
        "specversion": "1.0",
        "type": WME_TYPE,
        "source": centre_id,
        "subject": centre_id,
        "time": _timestamp(now),
        "datacontenttype": "application/json",
        "dataschema": DATASCHEMA,
        "data": data,
    }
