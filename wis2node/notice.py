"""Planned outages: a WIS2 Monitoring Event "Data outage notice" from the node's own broker.

    python -m wis2node notice --stack S --start 2026-01-05T14:00Z --end 2026-01-05T17:00Z --message "..."
    python -m wis2node notice --stack S --start ... --end ... --message "..." --cancel

Published as the publisher account on monitor/a/wis2/<centre-id> (the ACL lets the publisher write
exactly there, and everyone read), where the Global Brokers pick it up. Shaped like the
specification's examples/wmem-wis2node-outage.json and validated against the pinned WME schema
before it is sent. The notice's id is derived from the centre and the interval, so --cancel with the
same --start and --end refers to it (data.ref) without the node keeping any state.
"""

from __future__ import annotations

import datetime
import json
import ssl
import threading
import uuid

from wis2node.errors import SettingsError
from wis2node.node.rules import topic_root
from wis2node.node.wis2events import outage_notice, schema_errors

MAX_MESSAGE = 1000


def parse_time(name: str, text: str | None) -> datetime.datetime | None:
    """An ISO 8601 instant with its offset (Z or +hh:mm); '..' (or nothing) for an open start."""
    if text in (None, "", ".."):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SettingsError(
            f"--{name}: {text!r} is not a date and time; expected ISO 8601 with a time zone, e.g. 2026-01-05T14:00:00Z"
        ) from None
    if moment.tzinfo is None:
        raise SettingsError(f"--{name}: {text!r} has no time zone; expected e.g. 2026-01-05T14:00:00Z")
    return moment.astimezone(datetime.UTC)


def notice_id(centre_id: str, start: datetime.datetime | None, end: datetime.datetime) -> str:
    return str(
        uuid.uuid5(
            uuid.NAMESPACE_URL, f"wis2-node:outage:{centre_id}:{start.isoformat() if start else '..'}:{end.isoformat()}"
        )
    )


def build(
    centre_id: str,
    start_text: str | None,
    end_text: str,
    message: str,
    *,
    channel: str = "",
    cancel: bool = False,
    now: datetime.datetime | None = None,
) -> dict:
    """The event to send, validated; SettingsError names the argument that is wrong."""
    start, end = parse_time("start", start_text), parse_time("end", end_text)
    if end is None:
        raise SettingsError("--end: required; expected e.g. 2026-01-05T17:00:00Z")
    if start is not None and start >= end:
        raise SettingsError(f"--start: {start_text!r} is not before --end {end_text!r}")
    message = " ".join(message.split())
    if not message or len(message) > MAX_MESSAGE:
        raise SettingsError(f"--message: expected 1 to {MAX_MESSAGE} characters, got {len(message)}")
    if channel and not channel.startswith(f"{topic_root(centre_id)}/"):
        raise SettingsError(
            f"--channel: {channel!r} is not a topic of the centre; expected {topic_root(centre_id)}/..."
        )
    identity = notice_id(centre_id, start, end)
    event = outage_notice(centre_id, start, end, message, channel, now=now, ref=identity if cancel else "")
    if not cancel:
        event["id"] = identity
    errors = schema_errors(event)
    if errors:
        raise SettingsError("the notice does not validate against the WME schema: " + "; ".join(errors))
    return event


def send(
    event: dict,
    host: str,
    port: int,
    username: str,
    password: str,
    *,
    ca_file: str | None = None,
    timeout: float = 15,
) -> int:
    """Publish at QoS 1 over MQTTS and wait for the broker's answer: its MQTT 5 reason code (0: accepted)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=f"wis2-notice-{uuid.uuid4().hex[:16]}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(username, password)
    client.tls_set_context(ssl.create_default_context(cafile=ca_file))  # the certificate must name the host
    connected, acked = threading.Event(), threading.Event()
    result: dict[str, int] = {}

    def on_connect(c, u, f, reason, p):  # paho's callback signature
        result["connect"] = reason.value
        connected.set()

    def on_publish(c, u, mid, reason, p):
        result["publish"] = reason.value
        acked.set()

    client.on_connect, client.on_publish = on_connect, on_publish
    client.connect(host, port, keepalive=30)
    client.loop_start()
    try:
        if not connected.wait(timeout) or result.get("connect"):
            raise ConnectionError(
                f"could not log in to {host}:{port} as {username} (reason {result.get('connect', 'timeout')})"
            )
        client.publish(topic_root(event["source"], "monitor"), json.dumps(event), qos=1)
        if not acked.wait(timeout):
            raise ConnectionError("no acknowledgement from the broker")
        return result["publish"]
    finally:
        client.disconnect()
        client.loop_stop()
