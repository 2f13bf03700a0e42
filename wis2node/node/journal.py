"""Ship the node's service logs from journald to CloudWatch Logs: `python -m wis2node.node ship-logs`.

Run by wis2-logs.timer every minute. It reads `journalctl -o json` for the node's units after
the cursor it saved last time, sends each service's lines to its log group
(/wis2-node/<stack>/<service>, declared by Pulumi with the stack's retention; the instance role
may write only there) in one stream named after the instance, and saves the cursor of the last
entry once every group has taken its lines: at least once, never lost. The cursor belongs to
the journal it came from (the root volume's): a new machine starts from its own first boot.
Node-side: standard library and boto3 only.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterable, Iterator

from wis2node.node.nodeconfig import CONFIG_PATH, Logs, load_config

# The services operators read (`python -m wis2node logs --service NAME`), each from its units.
SERVICES: dict[str, tuple[str, ...]] = {
    "agent": ("wis2-agent.service",),
    "broker": ("mosquitto.service",),
    "web": ("nginx.service",),  # nginx's error log goes to the journal (error_log stderr)
    "certificate": ("wis2-certificate.service", "certbot.service"),
    "config": ("wis2-config.service",),
    "watcher": ("wis2-watcher.service",),
}
# CloudWatch Logs' PutLogEvents limits (API reference): per call.
MAX_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD
MAX_SPAN_MS = 24 * 3600 * 1000
MAX_ENTRIES_PER_RUN = 50_000  # the timer comes back in a minute for the rest


def log_group(stack: str, service: str) -> str:
    return f"/wis2-node/{stack}/{service}"


def log_groups(stack: str) -> dict[str, str]:
    return {service: log_group(stack, service) for service in SERVICES}


def units() -> dict[str, str]:
    return {unit: service for service, names in SERVICES.items() for unit in names}


def _text(value) -> str:
    if isinstance(value, list):  # journald gives non-UTF-8 messages as a list of bytes
        return bytes(value).decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def events(lines: Iterable[str], unit_map: dict[str, str]) -> Iterator[tuple[str, dict, str]]:
    """(service, CloudWatch event, cursor) for each journal entry of a known unit."""
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        unit = entry.get("_SYSTEMD_UNIT")
        if unit not in unit_map:
            unit = entry.get("UNIT")  # systemd's own lines about the unit (started, failed, ...)
        service = unit_map.get(unit)
        if service is None:
            continue
        message = _text(entry.get("MESSAGE"))
        encoded = message.encode("utf-8")
        if len(encoded) > MAX_EVENT_BYTES:
            message = encoded[:MAX_EVENT_BYTES].decode("utf-8", errors="ignore")
        yield (
            service,
            {"timestamp": int(entry["__REALTIME_TIMESTAMP"]) // 1000, "message": message or " "},
            entry["__CURSOR"],
        )


def batches(items: list[dict]) -> Iterator[list[dict]]:
    """PutLogEvents calls within CloudWatch's limits, in time order."""
    batch: list[dict] = []
    size = 0
    for event in sorted(items, key=lambda e: e["timestamp"]):
        cost = len(event["message"].encode("utf-8")) + EVENT_OVERHEAD
        if batch and (
            len(batch) >= MAX_EVENTS
            or size + cost > MAX_BATCH_BYTES
            or event["timestamp"] - batch[0]["timestamp"] >= MAX_SPAN_MS
        ):
            yield batch
            batch, size = [], 0
        batch.append(event)
        size += cost
    if batch:
        yield batch


def put(logs, group: str, stream: str, items: list[dict]) -> int:
    """Send a service's events; create the stream the first time. Returns how many were taken."""
    taken = 0
    for batch in batches(items):
        try:
            answer = logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
        except logs.exceptions.ResourceNotFoundException:
            try:
                logs.create_log_stream(logGroupName=group, logStreamName=stream)
            except logs.exceptions.ResourceAlreadyExistsException:
                pass
            answer = logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=batch)
        rejected = answer.get("rejectedLogEventsInfo") or {}
        if rejected:  # too old or too new for CloudWatch: say so, do not retry them forever
            print(f"wis2-logs: {group}: CloudWatch refused some events ({rejected})", file=sys.stderr)
        taken += len(batch)
    return taken


def instance_id() -> str:
    """The stream's name: the instance id (IMDSv2), or the host name off EC2."""
    if os.environ.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true":
        try:
            token = (
                urllib.request.urlopen(
                    urllib.request.Request(
                        "http://169.254.169.254/latest/api/token",
                        method="PUT",
                        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
                    ),
                    timeout=2,
                )
                .read()
                .decode()
            )
            return (
                urllib.request.urlopen(
                    urllib.request.Request(
                        "http://169.254.169.254/latest/meta-data/instance-id",
                        headers={"X-aws-ec2-metadata-token": token},
                    ),
                    timeout=2,
                )
                .read()
                .decode()
            )
        except OSError:
            pass
    return socket.gethostname()


def machine_id() -> str:
    try:
        with open("/etc/machine-id") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def journal_command(cursor: str | None, unit_map: dict[str, str]) -> list[str]:
    command = ["journalctl", "--output=json", "--no-pager", "--quiet"]
    for unit in unit_map:
        command += ["--unit", unit]
    return command + ([f"--after-cursor={cursor}"] if cursor else ["--boot"])


def ship(config: Logs, logs, lines: Iterable[str], stream: str, saved: dict, machine: str) -> tuple[dict, dict]:
    """Send the lines' events where the logs section says; return (what each service took, the cursor to save)."""
    groups = config.groups
    per_service: dict[str, list[dict]] = {}
    last = None
    for count, (service, event, cursor) in enumerate(events(lines, config.units)):
        per_service.setdefault(service, []).append(event)
        last = cursor
        if count + 1 >= MAX_ENTRIES_PER_RUN:
            break
    sent = {service: put(logs, groups[service], stream, items) for service, items in per_service.items()}
    return sent, ({"machine_id": machine, "cursor": last} if last else saved)


def main(config_path: str = CONFIG_PATH) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    config = load_config(config_path, needs=())
    cursor_file = config.logs.cursor
    try:
        with open(cursor_file) as handle:
            saved = json.load(handle)
    except (OSError, ValueError):
        saved = {}
    machine = machine_id()
    cursor = saved.get("cursor") if saved.get("machine_id") == machine else None
    process = subprocess.Popen(journal_command(cursor, config.logs.units), stdout=subprocess.PIPE, text=True)
    lines = process.stdout
    assert lines is not None  # stdout=PIPE
    try:
        sent, state = ship(
            config.logs,
            boto3.client("logs", region_name=config.region),
            lines,
            config.logs.stream or instance_id(),
            saved,
            machine,
        )
    except (BotoCoreError, ClientError) as err:
        print(
            f"wis2-logs: CloudWatch Logs refused or unreachable ({err}); the journal keeps the lines, will retry",
            file=sys.stderr,
        )
        return 75
    finally:
        lines.close()
        process.terminate()
        process.wait()
    if state is not saved:
        os.makedirs(os.path.dirname(cursor_file), exist_ok=True)
        temporary = cursor_file + ".new"
        with open(temporary, "w") as handle:
            json.dump(state, handle)
        os.replace(temporary, cursor_file)
    print("wis2-logs: " + (", ".join(f"{s} {n}" for s, n in sorted(sent.items())) or "nothing new"))
    return 0
