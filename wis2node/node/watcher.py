"""What WIS2 says about the node, heard from the Global Brokers, as alerts and metrics.

    python -m wis2node.node watcher [/etc/wis2/node.json]

Subscribes as everyone on at least two Global Brokers (wis2node/node/data/global-endpoints.csv) to
monitor/, origin/ and cache/a/wis2/<centre-id>/#, and on the node's own broker to origin/...:
- each WIS2 Monitoring Event about the centre becomes one alert on the stack's SNS topic (de-duplicated
  across brokers, state on the data volume) and a WIS2Events datapoint with its severity; ERROR and
  CRITICAL ones put the WIS2EventsAlarming metric the wis2-events alarm watches;
- from what the brokers relay: how many Global Brokers relayed the node's latest message
  (BrokersRelaying, put only while the node publishes: the relay-low alarm), the relay latency, and the
  share of the node's core data the Global Caches copied (CacheCopiedShare);
- how many Global Brokers it is connected to (GlobalBrokersConnected, every minute): a watcher that
  hears no Global Broker, or reports nothing, raises the wis2-watcher-disconnected alarm.
Each broker reconnects with back-off; an outage is logged once, when it starts, and once when it ends.
Malformed events are logged and ignored.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import re
import signal
import sqlite3
import ssl
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wis2node.node.accounts import READ_ONLY_PASSWORD, READ_ONLY_USER
from wis2node.node.catalogue import DATA
from wis2node.node.nodeconfig import CONFIG_PATH, NodeConfig, load_config
from wis2node.node.rules import topic_root
from wis2node.node.wis2events import ALARMING, Event, Malformed, parse

LOG = logging.getLogger("wis2node.node.watcher")
ENDPOINTS_CSV = DATA / "global-endpoints.csv"
LOCAL = "local"  # the node's own broker, among the brokers
WATCHED_TRANSPORTS = ("wss",)  # what the node's egress lets out (HTTPS 443); see the CSV's header
RELAY_GRACE = 60  # seconds a Global Broker has to relay a message before it counts as not relaying
RELAY_WINDOW = 30 * 60  # the node "publishes" while it published within this window
CACHE_GRACE = 10 * 60  # a Global Cache has this long to copy a file
CACHE_WINDOW = 6 * 3600  # files of the last 6 hours count towards the share copied
REMEMBERED = 20000  # recent messages of the node kept in memory for the relay figures
EVENT_MEMORY_DAYS = 14
RECONNECT = (1, 120)  # back-off bounds, seconds


@dataclass(frozen=True)
class Broker:
    name: str
    host: str
    port: int
    transport: str  # mqtt (loopback only) | mqtts | wss
    path: str = ""
    username: str = READ_ONLY_USER
    password: str = READ_ONLY_PASSWORD
    ca_file: str | None = None  # default: the system's trusted CAs

    @classmethod
    def from_dict(cls, item: dict) -> Broker:
        transport = str(item.get("transport", ""))
        if transport not in ("mqtt", "mqtts", "wss"):
            raise ValueError(f"broker {item.get('name')!r}: transport {transport!r}, expected mqtt, mqtts or wss")
        if transport == "mqtt" and item.get("host") not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"broker {item.get('name')!r}: plain mqtt is for loopback only")
        return cls(
            name=str(item["name"]),
            host=str(item["host"]),
            port=int(item["port"]),
            transport=transport,
            path=str(item.get("path") or ""),
            username=str(item.get("username", READ_ONLY_USER)),
            password=str(item.get("password", READ_ONLY_PASSWORD)),
            ca_file=item.get("ca_file"),
        )


def catalogue(service: str = "global-broker", path: Path = ENDPOINTS_CSV) -> list[dict]:
    """Rows of the Global Service endpoint catalogue for one service."""
    with path.open(encoding="utf-8") as handle:
        rows = csv.DictReader(line for line in handle if not line.startswith("#"))
        return [row for row in rows if row.get("service") == service]


def global_brokers(transports: tuple[str, ...] = WATCHED_TRANSPORTS) -> list[Broker]:
    return [
        Broker(
            name=f"{row['operator']}-global-broker",
            host=row["host"],
            port=int(row["port"]),
            transport=row["transport"],
            path=row["path"],
        )
        for row in catalogue()
        if row["transport"] in transports
    ]


# -- state --------------------------------------------------------------------------------------


class SeenEvents:
    """Events already alerted, on the data volume: each alert goes out once across brokers and restarts."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY, at REAL, severity TEXT, "
            "title TEXT, source TEXT, brokers TEXT)"
        )
        self._lock = threading.Lock()

    def first(self, event: Event, broker: str, now: float) -> bool:
        """Record the event; True the first time it is heard (from any broker)."""
        with self._lock:
            inserted = (
                self._db.execute(
                    "INSERT OR IGNORE INTO seen VALUES (?, ?, ?, ?, ?, ?)",
                    (event.key, now, event.severity, event.title, event.source, broker),
                ).rowcount
                == 1
            )
            if not inserted:
                self._db.execute(
                    "UPDATE seen SET brokers = brokers || ' ' || ? WHERE key = ? "
                    "AND instr(' ' || brokers || ' ', ' ' || ? || ' ') = 0",
                    (broker, event.key, broker),
                )
            return inserted

    def recent(self, limit: int = 10) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT at, severity, title, source, brokers FROM seen ORDER BY at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [dict(zip(("at", "severity", "title", "source", "brokers"), row, strict=True)) for row in rows]

    def forget(self, now: float, days: float = EVENT_MEMORY_DAYS) -> None:
        with self._lock:
            self._db.execute("DELETE FROM seen WHERE at < ?", (now - days * 86400,))


class Relays:
    """The node's recent messages, which Global Brokers relayed them and when, which caches copied them."""

    def __init__(self, grace: float = RELAY_GRACE, cache_grace: float = CACHE_GRACE):
        self.grace, self.cache_grace = grace, cache_grace
        self._lock = threading.Lock()
        self._messages: OrderedDict[str, dict] = OrderedDict()  # id -> {at, data_id, cacheable, relays}
        self._cached: OrderedDict[str, float] = OrderedDict()  # data_id -> first seen on cache/
        # Relays heard before the node's own copy reached the watcher (its threads race): id -> {broker: at}
        self._early: OrderedDict[str, dict[str, float]] = OrderedDict()
        self._latencies: list[float] = []

    def published(self, message_id: str, data_id: str, cacheable: bool, now: float) -> None:
        with self._lock:
            if message_id not in self._messages:
                relays = self._early.pop(message_id, {})
                self._messages[message_id] = {"at": now, "data_id": data_id, "cacheable": cacheable, "relays": relays}
                self._latencies += [0.0] * len(relays)  # relayed at once: faster than the watcher could see
                while len(self._messages) > REMEMBERED:
                    self._messages.popitem(last=False)

    def relayed(self, broker: str, message_id: str, now: float) -> None:
        with self._lock:
            message = self._messages.get(message_id)
            if message is None:
                self._early.setdefault(message_id, {}).setdefault(broker, now)
                while len(self._early) > REMEMBERED:
                    self._early.popitem(last=False)
            elif broker not in message["relays"]:
                message["relays"][broker] = now
                self._latencies.append(max(0.0, now - message["at"]))

    def cached(self, data_id: str, now: float) -> None:
        with self._lock:
            self._cached.setdefault(data_id, now)
            while len(self._cached) > REMEMBERED:
                self._cached.popitem(last=False)

    def figures(self, now: float) -> dict[str, float]:
        """BrokersRelaying (only while the node publishes), RelayLatency, CacheCopiedShare; what applies."""
        with self._lock:
            figures: dict[str, float] = {}
            settled = [m for m in self._messages.values() if now - RELAY_WINDOW <= m["at"] <= now - self.grace]
            if settled:
                figures["BrokersRelaying"] = float(len(settled[-1]["relays"]))
            if self._latencies:
                figures["RelayLatency"] = max(self._latencies)
                self._latencies = []
            copyable = [
                m
                for m in self._messages.values()
                if m["cacheable"] and now - CACHE_WINDOW <= m["at"] <= now - self.cache_grace
            ]
            if copyable:
                copied = sum(1 for m in copyable if m["data_id"] in self._cached)
                figures["CacheCopiedShare"] = round(100.0 * copied / len(copyable), 1)
            return figures


# -- the watcher --------------------------------------------------------------------------------


class Watcher:
    """Turns what the brokers say into alerts and metrics; the MQTT plumbing is in Connection."""

    def __init__(
        self,
        config: NodeConfig,
        *,
        alert: Callable[[str, str], None],
        put: Callable[[list], None],
        clock: Callable[[], float] = time.time,
    ):
        self.centre_id = config.centre_id
        self.stack = config.stack
        self.alert, self.put, self.clock = alert, put, clock
        wis2 = config.wis2
        self.seen = SeenEvents(Path(wis2.state_dir) / "events.sqlite")
        self.relays = Relays(
            RELAY_GRACE if wis2.relay_grace is None else wis2.relay_grace,
            CACHE_GRACE if wis2.cache_grace is None else wis2.cache_grace,
        )
        self._events: list[str] = []  # severities heard since the last tick
        self._lock = threading.Lock()
        # How many Global Brokers the watcher is connected to (run() sets it; None: not reported).
        self.listening: Callable[[], int] | None = None

    def topics(self, broker: str) -> list[str]:
        centre = self.centre_id
        if broker == LOCAL:
            return [f"{topic_root(centre)}/#"]
        return [f"{topic_root(centre, channel)}/#" for channel in ("monitor", "origin", "cache")]

    def on_message(self, broker: str, topic: str, payload: bytes) -> None:
        now = self.clock()
        try:
            if topic.startswith("monitor/"):
                self._on_event(broker, topic, payload, now)
            elif topic.startswith(("origin/", "cache/")):
                self._on_notification(broker, topic, payload, now)
        except Exception:  # one bad message never stops the watcher
            LOG.exception("%s: could not handle a message on %s", broker, topic)

    def _on_event(self, broker: str, topic: str, payload: bytes, now: float) -> None:
        try:
            event = parse(payload)
        except Malformed as err:
            LOG.warning("%s: malformed event on %s ignored: %s", broker, topic, err)
            return
        if event.subject != self.centre_id or event.source == self.centre_id:
            return  # about someone else, or the node's own notice relayed back
        if not self.seen.first(event, broker, now):
            return
        LOG.info("%s", event_line(event, broker))
        self.alert(*alert_text(event, broker, self.stack))
        with self._lock:
            self._events.append(event.severity)

    def _on_notification(self, broker: str, topic: str, payload: bytes, now: float) -> None:
        try:
            message = json.loads(payload)
            message_id, properties = message["id"], message["properties"]
            data_id = properties["data_id"]
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            LOG.warning("%s: not a notification on %s, ignored", broker, topic)
            return
        if not isinstance(message_id, str) or not isinstance(data_id, str):
            return
        if topic.startswith("cache/"):
            self.relays.cached(data_id, now)
        elif broker == LOCAL:
            cacheable = "/data/core/" in topic and properties.get("cache", True) is not False
            self.relays.published(message_id, data_id, cacheable, now)
        else:
            self.relays.relayed(broker, message_id, now)

    def tick(self) -> list[dict]:
        """Put the metrics of the last interval; return the datapoints."""
        now = self.clock()
        stack = [{"Name": "Stack", "Value": self.stack}]
        with self._lock:
            events, self._events = self._events, []
        data = []
        for severity in sorted(set(events)):
            data.append(
                {
                    "MetricName": "WIS2Events",
                    "Unit": "Count",
                    "Value": float(events.count(severity)),
                    "Dimensions": stack + [{"Name": "Severity", "Value": severity}],
                }
            )
        alarming = sum(1 for s in events if s in ALARMING)
        data.append(
            {"MetricName": "WIS2EventsAlarming", "Unit": "Count", "Value": float(alarming), "Dimensions": stack}
        )
        units = {"BrokersRelaying": "Count", "RelayLatency": "Seconds", "CacheCopiedShare": "Percent"}
        for name, value in self.relays.figures(now).items():
            data.append({"MetricName": name, "Unit": units[name], "Value": value, "Dimensions": stack})
        if self.listening is not None:
            data.append(
                {
                    "MetricName": "GlobalBrokersConnected",
                    "Unit": "Count",
                    "Value": float(self.listening()),
                    "Dimensions": stack,
                }
            )
        self.put(data)
        self.seen.forget(now)
        return data


EVENT_LINE = "WIS2 event"  # what `verify` looks for in the watcher's log (CloudWatch Logs)
EVENT_PATTERN = re.compile(
    r"WIS2 event (?P<severity>[A-Z]+) from (?P<source>\S+) via (?P<broker>\S+): "
    r"(?P<title>.*) \[(?P<id>[^\]]*)\]$"
)


def event_line(event: Event, broker: str) -> str:
    """The log line of an alerted event: one line, EVENT_PATTERN reads it back."""

    def one(text: str) -> str:
        return " ".join(text.split()) or "-"

    return (
        f"{EVENT_LINE} {event.severity} from {one(event.source).replace(' ', '_')} via {broker}: "
        f"{one(event.title)} [{one(event.id).replace(']', ')')}]"
    )


def alert_text(event: Event, broker: str, stack: str) -> tuple[str, str]:
    """The SNS subject (100 characters at most, one line) and message of an event."""
    subject = " ".join(f"WIS2 {event.severity}: {event.title}".split())[:100]
    lines = [
        f"A WIS2 Global Service reports about centre {event.subject} (stack {stack}).",
        "",
        f"Severity:    {event.severity}",
        f"Title:       {event.title}",
        f"Description: {event.description or '-'}",
        f"Said by:     {event.source}",
        f"Heard on:    {broker}",
        f"Event time:  {event.time or '-'}",
        f"Event id:    {event.id}",
    ]
    if event.channel:
        lines.append(f"Channel:     {event.channel}")
    lines += ["", 'What to do: see the README, section "WIS2 alerts", under this title.']
    return subject, "\n".join(lines)


class Connection:
    """One broker: paho with automatic reconnection (back-off), subscriptions renewed on each connect."""

    def __init__(self, broker: Broker, watcher: Watcher, client_id: str):
        import paho.mqtt.client as mqtt

        self.broker, self.watcher = broker, watcher
        self.connected = threading.Event()
        self.down_since: float | None = None
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            transport="websockets" if broker.transport == "wss" else "tcp",
        )
        self.client.username_pw_set(broker.username, broker.password)
        if broker.transport in ("mqtts", "wss"):
            self.client.tls_set(ca_certs=broker.ca_file, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        if broker.transport == "wss":
            self.client.ws_set_options(path=broker.path or "/mqtt")
        self.client.reconnect_delay_set(*RECONNECT)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = lambda client, userdata: self._down("cannot connect")
        self.client.on_message = lambda c, u, message: watcher.on_message(
            broker.name, message.topic, bytes(message.payload)
        )

    def start(self) -> None:
        import paho.mqtt.client as mqtt

        properties = mqtt.Properties(mqtt.PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600  # what a broker queued during a short outage is delivered
        self.client.connect_async(
            self.broker.host, self.broker.port, keepalive=60, clean_start=False, properties=properties
        )
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._down(f"refused: {reason_code}")
            return
        for topic in self.watcher.topics(self.broker.name):
            client.subscribe(topic, qos=1)
        if self.down_since is not None:
            LOG.info("%s: connected again after %.0f s", self.broker.name, time.monotonic() - self.down_since)
        else:
            LOG.info(
                "%s: connected (%s://%s:%s)",
                self.broker.name,
                self.broker.transport,
                self.broker.host,
                self.broker.port,
            )
        self.down_since = None
        self.connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._down(f"disconnected: {reason_code}")

    def _down(self, reason: str) -> None:
        self.connected.clear()
        if self.down_since is None:  # one line per outage, not one per retry
            self.down_since = time.monotonic()
            LOG.warning("%s: %s; retrying with back-off up to %d s", self.broker.name, reason, RECONNECT[1])


def brokers_of(config: NodeConfig) -> list[Broker]:
    """The node's own broker (loopback) and the Global Brokers: node.json's list, else the catalogue's."""
    local = Broker(name=LOCAL, host="127.0.0.1", port=config.broker.local_port, transport="mqtt")
    listed = config.wis2.brokers
    remote = [Broker.from_dict(item) for item in listed] if listed else global_brokers()
    if len({b.name for b in remote}) < 2:
        raise ValueError("the watcher needs at least two Global Brokers")
    return [local, *remote]


def client_id(config: NodeConfig, broker: Broker) -> str:
    """Stable per node and broker (its session survives a reconnect), not guessable from the centre-id alone."""
    digest = hashlib.sha256(f"{config.stack}/{config.fqdn}/{broker.name}".encode()).hexdigest()[:16]
    return f"wis2-watch-{config.centre_id[:40]}-{digest}"


def alerts_topic(arn: str | None, parameter: str, session) -> str:
    """The stack's SNS topic: node.json may name it (arn); otherwise the parameter the monitoring component writes."""
    return arn or session.client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]


def run(config: NodeConfig, *, session=None, stop: threading.Event | None = None, interval: float = 60) -> None:
    from wis2node.node import aws

    session = session or aws.Session(config.region, ("sns", "cloudwatch", "ssm"))
    sns, cloudwatch = session.client("sns"), session.client("cloudwatch")
    topic_arn = alerts_topic(config.wis2.alerts_topic_arn, config.wis2.alerts_topic_parameter, session)
    namespace = config.monitoring.namespace

    def alert(subject: str, message: str) -> None:
        sns.publish(TopicArn=topic_arn, Subject=subject, Message=message)

    def put(data: list) -> None:
        for start in range(0, len(data), 20):
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + 20])

    watcher = Watcher(config, alert=alert, put=put)
    connections = [Connection(broker, watcher, client_id(config, broker)) for broker in brokers_of(config)]
    watcher.listening = lambda: sum(c.connected.is_set() for c in connections if c.broker.name != LOCAL)
    LOG.info("watching %s on %s", config.centre_id, ", ".join(c.broker.name for c in connections))
    for connection in connections:
        connection.start()
    stop = stop or threading.Event()
    try:
        while not stop.wait(interval):
            try:
                watcher.tick()
            except Exception as err:  # CloudWatch unreachable: the next tick tries again
                LOG.error("could not put the metrics: %s", err)
    finally:
        for connection in connections:
            connection.stop()


def main(config_path: str = CONFIG_PATH) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    config = load_config(config_path, needs=())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    interval = 60.0 if config.wis2.interval is None else config.wis2.interval
    run(config, stop=stop, interval=interval)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
