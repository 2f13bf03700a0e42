"""`verify`'s WIS2 section: the node as WIS2 sees it, checked from the operator's machine.

- wis2-watcher: how many Global Brokers the node's watcher hears (its GlobalBrokersConnected);
- wis2-relay: the watcher's latest relay figures (how many Global Brokers relayed the node's latest
  message, the latency, the share the Global Caches copied), from CloudWatch;
- wis2-broker, one line per Global Broker of the endpoint catalogue (one endpoint per operator, WSS
  on 443 first: it passes most firewalls): subscribed as everyone to origin/a/wis2/<centre-id>/#,
  beside the node's own broker; the first message of the node heard within --wis2-wait seconds
  says which brokers relayed it, and how long after the node's broker delivered it here;
- wis2-gdc, one line per Global Discovery Catalogue: the stack's records (stacks/<stack>/metadata)
  missing from it, stale in it, or unknown to the stack (wis2node/node/gdc.py);
- wis2-alerts: the latest WIS2 events the watcher alerted on (its log in CloudWatch Logs).

A Global Service this machine cannot reach is one line saying so, marked "skip": it does not fail
verify (a laptop's firewall is not the node's fault), and every wait is bounded (a Global Service
that accepts a connection and never answers costs CONNECT_TIMEOUT or GDC_DEADLINE, no more).
Read-only: nothing is published.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wis2node.errors import SettingsError
from wis2node.node.accounts import READ_ONLY_PASSWORD, READ_ONLY_USER
from wis2node.node.rules import topic_root

CONNECT_TIMEOUT = 10.0  # seconds a broker has to accept the subscription
RELAY_GRACE = 15.0  # seconds the Global Brokers have to relay the node's message once the node sent it
GDC_TIMEOUT = 10.0  # per request
GDC_DEADLINE = 30.0  # per catalogue, all pages
FIGURES_FRESH = 15 * 60  # the watcher puts GlobalBrokersConnected every minute
FIGURES_WINDOW = 3 * 3600  # how far back the watcher's relay figures count
ALERT_DAYS = 7
ALERTS_SHOWN = 5
BROKER_TRANSPORTS = ("wss", "mqtts", "mqtt")  # preference, per operator
GDC_TRANSPORTS = ("https", "http")

Add = Callable[..., None]  # Verifier.add(name, ok, detail, skipped=False)


@dataclass(frozen=True)
class Endpoint:
    name: str
    host: str
    port: int
    transport: str
    path: str = ""

    @property
    def url(self) -> str:
        return f"{self.transport}://{self.host}:{self.port}{self.path}"


@dataclass(frozen=True)
class Wis2Options:
    """What the WIS2 section does: verify listens and asks the Global Services (live); status reads
    what the watcher reported to AWS only."""

    brokers: tuple[Endpoint, ...] = ()
    catalogues: tuple[tuple[str, str], ...] = ()
    wait: float = 30.0  # seconds to wait for a message of the node
    live: bool = True

    @classmethod
    def from_catalogue(cls, path: Path | None = None, wait: float = 30.0) -> Wis2Options:
        if not 0 <= wait <= 3600:
            raise SettingsError(f"--wis2-wait {wait:g}: expected 0 to 3600 seconds")
        brokers, catalogues = global_endpoints(path)
        return cls(tuple(brokers), tuple(catalogues), wait, True)


def global_endpoints(path: Path | None = None) -> tuple[list[Endpoint], list[tuple[str, str]]]:
    """The Global Brokers to listen on (one endpoint per operator) and the GDCs (name, base URL)."""
    from wis2node.node import gdc
    from wis2node.node.watcher import ENDPOINTS_CSV, catalogue

    source = path or ENDPOINTS_CSV
    try:
        brokers = catalogue("global-broker", source)
        catalogues = catalogue("global-discovery-catalogue", source)
    except (OSError, UnicodeDecodeError) as err:
        raise SettingsError(f"--global-endpoints {source}: cannot read it: {err}") from None
    chosen: dict[str, Endpoint] = {}
    for row in brokers:
        endpoint = _broker(row, source)
        current = chosen.get(row["operator"])
        if current is None or BROKER_TRANSPORTS.index(endpoint.transport) < BROKER_TRANSPORTS.index(current.transport):
            chosen[row["operator"]] = endpoint
    found = []
    for row in catalogues:
        if row.get("transport") not in GDC_TRANSPORTS:
            raise SettingsError(
                f"--global-endpoints {source}: catalogue {row.get('operator')!r}: transport "
                f"{row.get('transport')!r}, expected https"
            )
        name, url = gdc.catalogue_name(row), gdc.catalogue_url(row)
        try:
            gdc.check_url(name, url)
        except ValueError as err:
            raise SettingsError(f"--global-endpoints {source}: {err}") from None
        found.append((name, url))
    return list(chosen.values()), found


def _broker(row: dict, source: Path) -> Endpoint:
    from wis2node.node.gdc import LOOPBACK

    operator, transport, host = row.get("operator") or "", row.get("transport") or "", row.get("host") or ""
    where = f"--global-endpoints {source}: broker {operator!r}"
    if not operator or not host:
        raise SettingsError(f"{where}: operator and host are required")
    if transport not in BROKER_TRANSPORTS:
        raise SettingsError(f"{where}: transport {transport!r}, expected wss or mqtts")
    if transport == "mqtt" and host not in LOOPBACK:
        raise SettingsError(f"{where}: plain mqtt ({host!r}) is for loopback only")
    try:
        port = int(row.get("port") or "")
    except ValueError:
        raise SettingsError(f"{where}: port {row.get('port')!r}, expected a number") from None
    if not 0 < port < 65536:
        raise SettingsError(f"{where}: port {port}, expected 1-65535")
    return Endpoint(f"{operator}-global-broker", host, port, transport, row.get("path") or "")


# -- listening on the brokers -------------------------------------------------------------------


class Listener:
    """One subscription as everyone, in a daemon thread of its own: a connection that hangs (DNS, a
    broker that never answers) never holds verify, which stops waiting at its deadlines."""

    def __init__(self, endpoint: Endpoint, topic: str, context: ssl.SSLContext | None):
        import paho.mqtt.client as mqtt

        self.endpoint, self.topic = endpoint, topic
        self.ready = threading.Event()  # subscribed, or failed
        self.subscribed = False
        self.error: str | None = None
        self._heard: dict[str, float] = {}  # message id -> when first heard (monotonic)
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"wis2-verify-{uuid.uuid4().hex[:16]}",
            protocol=mqtt.MQTTv5,
            transport="websockets" if endpoint.transport == "wss" else "tcp",
        )
        self.client.connect_timeout = CONNECT_TIMEOUT
        self.client.username_pw_set(READ_ONLY_USER, READ_ONLY_PASSWORD)
        if context is not None:
            self.client.tls_set_context(context)
        if endpoint.transport == "wss":
            self.client.ws_set_options(path=endpoint.path or "/mqtt")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = lambda c, u, f, reason, p: self.fail(f"disconnected: {reason}")
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"verify-{endpoint.name}")

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.client.connect(self.endpoint.host, self.endpoint.port, keepalive=30)
        except Exception as err:  # whatever the network says becomes the line
            self.fail(_describe(err))
            return
        self.client.loop_forever(retry_first_connection=False)

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self.fail(f"refused {READ_ONLY_USER}: {reason}")
            client.disconnect()
            return
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, client, userdata, mid, reasons, properties) -> None:
        if reasons and all(not r.is_failure for r in reasons):
            self.subscribed = True
            self.ready.set()
        else:
            self.fail(f"subscription to {self.topic} refused: {reasons[0] if reasons else '?'}")

    def _on_message(self, client, userdata, message) -> None:
        now = time.monotonic()
        try:
            message_id = json.loads(message.payload).get("id")
        except (ValueError, AttributeError, UnicodeDecodeError):
            return
        if isinstance(message_id, str):
            with self._lock:
                self._heard.setdefault(message_id, now)

    def fail(self, reason: str) -> None:
        if not self.ready.is_set():
            self.error = reason[:300]
            self.ready.set()

    def first(self) -> tuple[str, float] | None:
        with self._lock:
            return min(self._heard.items(), key=lambda item: item[1]) if self._heard else None

    def heard(self, message_id: str) -> float | None:
        with self._lock:
            return self._heard.get(message_id)

    def stop(self) -> None:
        with contextlib.suppress(Exception):  # never connected
            self.client.disconnect()
        self._thread.join(timeout=1)


def _describe(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def listen(
    node: Listener,
    brokers: list[Listener],
    wait: float,
    grace: float = RELAY_GRACE,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[str, float] | None:
    """Start every listener; wait for the first message of the node, then for the brokers to relay it.
    Returns that message (id, when heard from the node), or None."""
    everyone = [node, *brokers]
    for listener in everyone:
        listener.start()
    deadline = clock() + CONNECT_TIMEOUT
    for listener in everyone:
        listener.ready.wait(max(0.0, deadline - clock()))
        if not listener.ready.is_set():
            listener.fail(f"no answer within {CONNECT_TIMEOUT:.0f} s")
    if not node.subscribed:
        return None
    listening = [b for b in brokers if b.subscribed]
    started = clock()
    while True:
        first = node.first()
        now = clock()
        if first is None and now >= started + wait:
            return None
        if first is not None and (now >= first[1] + grace or all(b.heard(first[0]) for b in listening)):
            return first
        time.sleep(0.1)


def broker_checks(
    add: Add, brokers: list[Listener], first: tuple[str, float] | None, wait: float, node_error: str | None
) -> None:
    for listener in brokers:
        name = listener.endpoint.name
        if not listener.subscribed:
            add(
                "wis2-broker",
                True,
                f"{name} ({listener.endpoint.url}): not reachable from here: {listener.error}",
                skipped=True,
            )
        elif first is None:
            why = (
                f"the node's broker is not reachable from here ({node_error})"
                if node_error
                else f"no message of the node in {wait:.0f} s to follow"
            )
            add("wis2-broker", True, f"{name}: subscribed as {READ_ONLY_USER} ({why})")
        else:
            at = listener.heard(first[0])
            if at is None:
                add(
                    "wis2-broker",
                    False,
                    f"{name}: subscribed, but did not relay the node's message {first[0]} within {RELAY_GRACE:.0f} s",
                )
            else:
                add(
                    "wis2-broker",
                    True,
                    f"{name}: relayed the node's message {max(0.0, at - first[1]):.1f} s "
                    f"after the node's broker delivered it here",
                )


# -- the Global Discovery Catalogues ------------------------------------------------------------


def gdc_checks(
    add: Add, declared: dict[str, str], catalogues: list[tuple[str, str]], centre_id: str, where: str
) -> None:
    """Ask every catalogue at once, each bounded by GDC_DEADLINE."""
    from wis2node.node import gdc

    if not declared:
        add("wis2-gdc", True, f"no discovery records in {where} to look for", skipped=True)
        return
    results: dict[str, gdc.Finding | str] = {}

    def ask(name: str, url: str) -> None:
        try:
            results[name] = gdc.compare(name, declared, gdc.catalogue_records(url, centre_id, timeout=GDC_TIMEOUT))
        except Exception as err:  # whatever the network says becomes the line
            results[name] = _describe(err)

    threads = [threading.Thread(target=ask, args=item, daemon=True) for item in catalogues]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + GDC_DEADLINE
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for name, url in catalogues:
        found = results.get(name, f"no complete answer within {GDC_DEADLINE:.0f} s")
        if isinstance(found, str):
            add("wis2-gdc", True, f"{name} ({url}): not reachable from here: {found[:300]}", skipped=True)
        elif found.ok:
            add("wis2-gdc", True, f"{name}: the {len(declared)} records are there and current")
        else:
            add("wis2-gdc", False, found.describe())


# -- what the node's watcher reports (CloudWatch) -----------------------------------------------


def latest_figures(
    session, stack: str, names: tuple[str, ...], now: datetime.datetime, window: float = FIGURES_WINDOW
) -> dict[str, tuple[float, datetime.datetime]]:
    """The latest datapoint of each of the watcher's metrics within the window: name -> (value, when)."""
    from wis2node.payload import METRIC_NAMESPACE

    queries = [
        {
            "Id": f"m{index}",
            "ReturnData": True,
            "MetricStat": {
                "Metric": {
                    "Namespace": METRIC_NAMESPACE,
                    "MetricName": name,
                    "Dimensions": [{"Name": "Stack", "Value": stack}],
                },
                "Period": 60,
                "Stat": "Maximum",
            },
        }
        for index, name in enumerate(names)
    ]
    answer = session.client("cloudwatch").get_metric_data(
        MetricDataQueries=queries,
        StartTime=now - datetime.timedelta(seconds=window),
        EndTime=now + datetime.timedelta(minutes=1),  # the end is exclusive: the figure of this minute too
        ScanBy="TimestampDescending",
    )
    found = {}
    for result in answer.get("MetricDataResults", []):
        points = sorted(zip(result.get("Timestamps", []), result.get("Values", []), strict=True), reverse=True)
        if points:
            found[names[int(result["Id"][1:])]] = (points[0][1], points[0][0])
    return found


def _ago(when: datetime.datetime, now: datetime.datetime) -> str:
    when = when.astimezone(datetime.UTC)
    minutes = max(0, int((now - when).total_seconds() // 60))
    return f"{when:%H:%M}Z, {minutes} min ago" if minutes < 120 else f"{when:%Y-%m-%d %H:%M}Z"


def watcher_checks(add: Add, session, settings, now: datetime.datetime) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    names = ("GlobalBrokersConnected", "BrokersRelaying", "RelayLatency", "CacheCopiedShare")
    try:
        figures = latest_figures(session, settings.stack, names, now)
    except (BotoCoreError, ClientError) as err:
        add("wis2-watcher", False, f"cannot read the watcher's figures: {err}")
        return
    logs = f"python -m wis2node logs --stack {settings.stack} --service watcher"
    connected = figures.get("GlobalBrokersConnected")
    if connected is None:
        add(
            "wis2-watcher",
            False,
            f"no figure from the node's watcher for {FIGURES_WINDOW // 3600} hours: is wis2-watcher running? ({logs})",
        )
    elif (now - connected[1]).total_seconds() > FIGURES_FRESH:
        add(
            "wis2-watcher",
            False,
            f"the node's watcher last reported at {_ago(connected[1], now)}: is wis2-watcher running? ({logs})",
        )
    else:
        count = int(connected[0])
        add(
            "wis2-watcher",
            count >= 1,
            f"the node's watcher hears {count} Global Broker{'s' * (count != 1)} "
            f"({_ago(connected[1], now)})" + ("" if count else f": {logs}"),
        )
    relaying = figures.get("BrokersRelaying")
    if relaying is None:
        add(
            "wis2-relay",
            True,
            f"no relay figure from the watcher for {FIGURES_WINDOW // 3600} hours (it puts "
            "one only while the node publishes)",
            skipped=True,
        )
        return
    count = int(relaying[0])
    extra = [
        f"latency {figures['RelayLatency'][0]:.1f} s" if "RelayLatency" in figures else "",
        f"Global Caches copied {figures['CacheCopiedShare'][0]:.0f}% of the core data"
        if "CacheCopiedShare" in figures
        else "",
    ]
    add(
        "wis2-relay",
        count >= 2,
        f"{count} Global Broker{'s' * (count != 1)} relayed the node's latest message "
        f"({_ago(relaying[1], now)}; the alarm fires under 2)" + "".join(f", {text}" for text in extra if text),
    )


# -- the alerts the watcher sent (CloudWatch Logs) ----------------------------------------------


def alert_checks(add: Add, session, stack: str, now: datetime.datetime, days: int = ALERT_DAYS) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    from wis2node.node.journal import log_group
    from wis2node.node.watcher import EVENT_LINE, EVENT_PATTERN

    group = log_group(stack, "watcher")
    logs = session.client("logs")
    arguments = {
        "logGroupName": group,
        "filterPattern": f'"{EVENT_LINE}"',
        "startTime": int((now - datetime.timedelta(days=days)).timestamp() * 1000),
    }
    found: list[tuple[int, dict]] = []
    try:
        for _ in range(20):  # pages; each at most 1 MB
            page = logs.filter_log_events(**arguments)
            for event in page.get("events", []):
                match = EVENT_PATTERN.search(event.get("message", "").rstrip())
                if match:
                    found.append((event["timestamp"], match.groupdict()))
            if not page.get("nextToken"):
                break
            arguments["nextToken"] = page["nextToken"]
    except logs.exceptions.ResourceNotFoundException:
        add("wis2-alerts", True, f"no log group {group}: the watcher's log is not shipped yet", skipped=True)
        return
    except (BotoCoreError, ClientError) as err:
        add("wis2-alerts", True, f"cannot read {group}: {err}", skipped=True)
        return
    if not found:
        add("wis2-alerts", True, f"no WIS2 event about the centre in {days} days")
        return
    found.sort(key=lambda item: item[0], reverse=True)
    for timestamp, event in found[:ALERTS_SHOWN]:
        when = datetime.datetime.fromtimestamp(timestamp / 1000, datetime.UTC)
        add(
            "wis2-alerts",
            True,
            f"{when:%Y-%m-%d %H:%M}Z {event['severity']} from {event['source']}: {event['title'][:200]}",
        )
    if len(found) > ALERTS_SHOWN:
        add(
            "wis2-alerts",
            True,
            f"and {len(found) - ALERTS_SHOWN} more in {days} days: python -m wis2node logs "
            f"--stack {stack} --service watcher --since {days}d",
        )


# -- the section --------------------------------------------------------------------------------


def run(
    add: Add,
    settings,
    session,
    options: Wis2Options,
    node: Endpoint | None = None,
    node_ca_file: str | None = None,
    now: datetime.datetime | None = None,
) -> None:
    """The WIS2 lines, in order: the watcher, the relays, the brokers, the catalogues, the alerts."""
    from wis2node.metadata import metadata_dir

    now = now or datetime.datetime.now(datetime.UTC)
    watcher_checks(add, session, settings, now)
    if options.live:
        brokers, catalogues = list(options.brokers), list(options.catalogues)
        directory = metadata_dir(settings.stack)
        from wis2node.node.gdc import updated_by_id

        declared = updated_by_id(directory) if directory.is_dir() else {}
        held: list = []
        asking = threading.Thread(
            target=lambda: gdc_checks(
                lambda *a, **k: held.append((a, k)),
                declared,
                catalogues,
                settings.centre_id,
                f"stacks/{settings.stack}/metadata",
            ),
            daemon=True,
        )
        asking.start()  # the catalogues while the brokers are listened to
        topic = f"{topic_root(settings.centre_id)}/#"
        node_context = ssl.create_default_context(cafile=node_ca_file)
        node_context.check_hostname = False  # the certificate checks named the FQDN already
        own = Listener(node or Endpoint("node", settings.fqdn, 8883, "mqtts"), topic, node_context)
        public = ssl.create_default_context()
        listeners = [Listener(b, topic, None if b.transport == "mqtt" else public) for b in brokers]
        try:
            first = listen(own, listeners, options.wait)
        finally:
            for listener in [own, *listeners]:
                listener.stop()
        broker_checks(add, listeners, first, options.wait, own.error)
        asking.join(GDC_DEADLINE + 5)
        for arguments, keywords in list(held):
            add(*arguments, **keywords)
    alert_checks(add, session, settings.stack, now)
