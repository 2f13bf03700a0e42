"""Read the node's service logs from CloudWatch Logs, without a session on the node:
`python -m wis2node logs --stack STACK [--service agent] [--since 1h]`.

The node ships its journal there every minute (wis2node/node/journal.py); each service has its log
group, /wis2-node/<stack>/<service>, kept wis2-node:logRetentionDays.
"""

from __future__ import annotations

import datetime
import heapq
import re
from collections.abc import Iterator

from wis2node.errors import SettingsError
from wis2node.node.journal import SERVICES, log_group

UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: datetime.datetime | None = None) -> datetime.datetime:
    """'90s', '30m', '1h', '2d' back from now, or an ISO 8601 time (UTC unless it says otherwise)."""
    now = now or datetime.datetime.now(datetime.UTC)
    found = re.fullmatch(r"(\d{1,6})\s*(s|m|min|h|d)", text.strip())
    if found:
        return now - datetime.timedelta(seconds=int(found.group(1)) * UNITS[found.group(2)])
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise SettingsError(
            f"--since {text!r}: expected a duration such as 30m, 1h, 2d, or a time such as 2026-11-24T12:00"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def _events(client, group: str, service: str, start_ms: int, limit: int) -> Iterator[tuple[int, str, str, str]]:
    arguments = {"logGroupName": group, "startTime": start_ms}
    count = 0
    while True:
        page = client.filter_log_events(**arguments)
        for event in page.get("events", []):
            yield event["timestamp"], service, event.get("logStreamName", ""), event["message"]
            count += 1
            if count >= limit:
                return
        if not page.get("nextToken"):
            return
        arguments["nextToken"] = page["nextToken"]


def read(
    session, stack: str, services: list[str], since: datetime.datetime, limit: int = 1000
) -> list[tuple[int, str, str, str]]:
    """(timestamp ms, service, stream, message) of each line, oldest first, at most `limit` a service."""
    client = session.client("logs")
    start = int(since.timestamp() * 1000)
    streams = []
    for service in services:
        group = log_group(stack, service)
        try:
            streams.append(list(_events(client, group, service, start, limit)))
        except client.exceptions.ResourceNotFoundException:
            raise SettingsError(
                f"no log group {group}: the stack was deployed before its logs were; run `pulumi up`"
            ) from None
    return list(heapq.merge(*streams))


def format_line(event: tuple[int, str, str, str], width: int) -> str:
    when = datetime.datetime.fromtimestamp(event[0] / 1000, datetime.UTC)
    return f"{when:%Y-%m-%d %H:%M:%S}Z {event[1]:{width}} {event[3].rstrip()}"


__all__ = ["SERVICES", "format_line", "parse_since", "read"]
