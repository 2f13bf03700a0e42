"""`verify`'s WIS2 section on loopback: the local node, stand-in Global Brokers (mosquitto + relay),
stand-in Global Discovery Catalogues, moto for what the node's watcher reported (CloudWatch metrics
and its log), and Global Services that refuse connections or accept them and never answer."""

from __future__ import annotations

import datetime
import json
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest

from tests.wis2node.global_broker import example, stand_in_brokers
from tests.wis2node.mqtt_clients import Client
from tests.wis2node.test_verify import Deployed, SsmStandIn
from tests.wis2node.test_wis2_metadata import StandInCatalogue, record
from wis2node.endpoints import PUBLISHER_USER
from wis2node.errors import SettingsError
from wis2node.local import LocalNode, free_port
from wis2node.localcloud import client, moto_server, run_environment
from wis2node.metadata import metadata_dir
from wis2node.node import gdc
from wis2node.node.journal import log_group
from wis2node.node.watcher import event_line
from wis2node.node.wis2events import parse
from wis2node.stackfile import ROOT, find_stack
from wis2node.verify_wis2 import Wis2Options, global_endpoints

SETTINGS = find_stack("aq-examplemet-test").settings()
CENTRE = SETTINGS.centre_id
DATA_TOPIC = f"origin/a/wis2/{CENTRE}/data/core/weather/surface-based-observations/synop"
DECLARED = gdc.updated_by_id(metadata_dir(SETTINGS.stack))


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with LocalNode(SETTINGS, tmp_path_factory.mktemp("node")) as running:
        yield running


@pytest.fixture
def brokers(node, tmp_path):
    with stand_in_brokers(node, tmp_path) as started:
        yield started


@pytest.fixture
def aws():
    from http.server import ThreadingHTTPServer

    ssm = ThreadingHTTPServer(("127.0.0.1", 0), SsmStandIn)
    threading.Thread(target=ssm.serve_forever, daemon=True).start()
    with moto_server(SETTINGS.region) as environment:
        Deployed(environment)
        yield {**environment, "AWS_ENDPOINT_URL_SSM": f"http://127.0.0.1:{ssm.server_address[1]}"}
    ssm.shutdown()


@pytest.fixture
def black_hole():
    """A port that accepts connections (the kernel's backlog) and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


def catalogue_file(path, brokers: dict[str, int], catalogues: dict[str, int]):
    lines = ["# stand-ins on loopback", "service,operator,host,port,transport,path"]
    lines += [f"global-broker,{name},127.0.0.1,{port},mqtt," for name, port in brokers.items()]
    lines += [f"global-discovery-catalogue,{name},127.0.0.1,{port},http,/" for name, port in catalogues.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def watcher_reported(aws: dict, *, connected: float | None = 2, relaying: float | None = 2, events=()) -> None:
    """What the node's watcher would have put in CloudWatch: its figures, and its log shipped."""
    dimensions = [{"Name": "Stack", "Value": SETTINGS.stack}]
    figures = {
        "GlobalBrokersConnected": connected,
        "BrokersRelaying": relaying,
        "RelayLatency": 0.4 if relaying else None,
        "CacheCopiedShare": 100.0 if relaying else None,
    }
    data = [
        {"MetricName": name, "Value": value, "Unit": "Count", "Dimensions": dimensions}
        for name, value in figures.items()
        if value is not None
    ]
    if data:
        client("cloudwatch", aws).put_metric_data(Namespace="WIS2Node", MetricData=data)
    if events:
        logs = client("logs", aws)
        group = log_group(SETTINGS.stack, "watcher")
        logs.create_log_group(logGroupName=group)
        logs.create_log_stream(logGroupName=group, logStreamName="i-0123")
        now = int(time.time() * 1000)
        lines = [
            {"timestamp": now - 60_000 * (len(events) - index), "message": f"INFO {line}"}
            for index, line in enumerate(events)
        ]
        lines.insert(1, {"timestamp": lines[0]["timestamp"] + 1, "message": "INFO gb-one: connected again after 3 s"})
        logs.put_log_events(logGroupName=group, logStreamName="i-0123", logEvents=lines)


class Publishing:
    """The node publishing a notification every half second, as its publisher, until stopped."""

    def __init__(self, node: LocalNode):
        self.client = Client(node, PUBLISHER_USER, node.publisher_password, transport="mqtt")
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.wait(0.5):
            message = {
                "id": str(uuid.uuid4()),
                "type": "Feature",
                "geometry": None,
                "links": [],
                "properties": {"data_id": f"{CENTRE}/x.bufr", "pubtime": "2026-01-01T00:00:00Z"},
            }
            self.client.publish(DATA_TOPIC, json.dumps(message).encode())

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.client.close()


def run_verify(aws: dict, node: LocalNode, *extra: str, command: str = "verify") -> subprocess.CompletedProcess:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "wis2node",
            command,
            "--stack",
            SETTINGS.stack,
            "--host",
            "127.0.0.1",
            "--https-port",
            str(node.ports.https),
            "--mqtts-port",
            str(node.ports.mqtts),
            "--ca-file",
            str(node.ca_file),
            *extra,
        ],
        cwd=ROOT,
        env=run_environment(aws),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert "Traceback" not in run.stderr, run.stderr
    return run


def wis2_lines(result: dict) -> list[tuple[str, str, str]]:
    return [
        ("skip" if c["skipped"] else "ok" if c["ok"] else "FAIL", c["name"], c["detail"])
        for c in result["checks"]
        if c["name"].startswith("wis2-")
    ]


def test_the_wis2_section_names_relays_catalogues_and_alerts_and_unreachable_services_do_not_fail(
    aws, node, brokers, black_hole, tmp_path
):
    one, two = brokers
    current = StandInCatalogue([record(i, "2026-12-31T00:00:00Z") for i in DECLARED])
    events = [example("wmem-gm-report", CENTRE), example("wmem-gb-wnm-report", CENTRE)]
    watcher_reported(
        aws, events=[event_line(parse(json.dumps(e).encode()), "fr-meteofrance-global-broker") for e in events]
    )
    endpoints = catalogue_file(
        tmp_path / "endpoints.csv",
        {"gb-one": one.port, "gb-two": two.port, "gb-refusing": free_port(), "gb-silent": black_hole},
        {"gdc-current": current.server_address[1], "gdc-refusing": free_port(), "gdc-silent": black_hole},
    )
    publishing = Publishing(node)
    try:
        run = run_verify(aws, node, "--json", "--global-endpoints", str(endpoints), "--wis2-wait", "20")
    finally:
        publishing.close()
        current.shutdown()
    result = json.loads(run.stdout)
    lines = wis2_lines(result)
    assert run.returncode == 0, lines

    def line(state: str, name: str, prefix: str) -> str:
        found = [d for s, n, d in lines if (s, n) == (state, name) and d.startswith(prefix)]
        assert len(found) == 1, (state, name, prefix, lines)
        return found[0]

    relayed = "relayed the node's message"
    assert relayed in line("ok", "wis2-broker", "gb-one-global-broker:")
    assert relayed in line("ok", "wis2-broker", "gb-two-global-broker:")
    assert "not reachable from here: ConnectionRefusedError" in line(
        "skip", "wis2-broker", "gb-refusing-global-broker (mqtt://127.0.0.1:"
    )
    assert line("skip", "wis2-broker", "gb-silent-global-broker (").endswith(
        "not reachable from here: no answer within 10 s"
    )
    assert line("ok", "wis2-gdc", "gdc-current-global-discovery-catalogue:").endswith(
        f"the {len(DECLARED)} records are there and current"
    )
    assert "not reachable from here" in line("skip", "wis2-gdc", "gdc-refusing-global-discovery-catalogue (http")
    assert "timed out" in line("skip", "wis2-gdc", "gdc-silent-global-discovery-catalogue (http")
    watcher = [(s, d) for s, n, d in lines if n == "wis2-watcher"]
    assert len(watcher) == 1 and watcher[0][0] == "ok"
    assert watcher[0][1].startswith("the node's watcher hears 2 Global Brokers (") and "min ago)" in watcher[0][1]
    assert "2 Global Brokers relayed the node's latest message" in next(d for s, n, d in lines if n == "wis2-relay")
    alerts = [(s, d) for s, n, d in lines if n == "wis2-alerts"]
    assert [s for s, _ in alerts] == ["ok", "ok"]
    assert alerts[0][1].endswith(f"ERROR from {events[1]['source']}: Global Broker WMN report"), "newest first"
    assert alerts[1][1].endswith(f"ERROR from {events[0]['source']}: WIS2 Node disconnected from all Global Brokers!")
    names = [n for _, n, _ in lines]
    assert names == sorted(names, key=["wis2-watcher", "wis2-relay", "wis2-broker", "wis2-gdc", "wis2-alerts"].index), (
        "one order, every time"
    )

    table = run_verify(aws, node, "--global-endpoints", str(endpoints), "--wis2-wait", "0")
    assert table.returncode == 0
    # the four above, and the current catalogue, shut down by now
    assert table.stdout.splitlines()[-1].endswith("checks, 0 failed, 5 not reachable from here or nothing to judge")
    assert any(line.startswith("skip  wis2-broker") for line in table.stdout.splitlines())


def test_a_broker_that_does_not_relay_and_a_catalogue_behind_fail(aws, node, brokers, tmp_path):
    one, two = brokers
    two.relay.disconnect()  # up, subscribed to by verify, but no longer relaying the node
    two.relay.loop_stop()
    two.relay = None
    kept, dropped = sorted(DECLARED)
    behind = StandInCatalogue([record(kept, "2026-12-31T00:00:00Z")])
    watcher_reported(aws, connected=None, relaying=1)
    endpoints = catalogue_file(
        tmp_path / "endpoints.csv", {"gb-one": one.port, "gb-two": two.port}, {"gdc-behind": behind.server_address[1]}
    )
    publishing = Publishing(node)
    try:
        run = run_verify(aws, node, "--json", "--global-endpoints", str(endpoints), "--wis2-wait", "20")
    finally:
        publishing.close()
        behind.shutdown()
    result = json.loads(run.stdout)
    assert run.returncode == 1
    failed = [(n, d) for s, n, d in wis2_lines(result) if s == "FAIL"]
    assert [
        f"{c['name']}: {c['detail']}" for c in result["checks"] if not c["ok"] and not c["name"].startswith("wis2-")
    ] == [], "the rest of the node is fine"
    assert [n for n, _ in failed] == ["wis2-watcher", "wis2-relay", "wis2-broker", "wis2-gdc"]
    details = dict(failed)
    assert details["wis2-watcher"].startswith("no figure from the node's watcher for 3 hours: is wis2-watcher running?")
    assert details["wis2-relay"].startswith("1 Global Broker relayed the node's latest message")
    assert details["wis2-broker"].startswith("gb-two-global-broker: subscribed, but did not relay the node's message")
    assert details["wis2-gdc"] == f"gdc-behind-global-discovery-catalogue: missing: {dropped}"
    skipped = [d for s, n, d in wis2_lines(result) if n == "wis2-alerts"]
    assert skipped == [f"no log group {log_group(SETTINGS.stack, 'watcher')}: the watcher's log is not shipped yet"]


def test_a_quiet_node_is_no_failure_and_no_wis2_leaves_the_section_out(aws, node, brokers, tmp_path):
    one, two = brokers
    watcher_reported(aws, relaying=None)
    endpoints = catalogue_file(tmp_path / "endpoints.csv", {"gb-one": one.port, "gb-two": two.port}, {})
    run = run_verify(aws, node, "--json", "--global-endpoints", str(endpoints), "--wis2-wait", "1")
    lines = wis2_lines(json.loads(run.stdout))
    assert run.returncode == 0, lines
    assert (
        "ok",
        "wis2-broker",
        "gb-one-global-broker: subscribed as everyone (no message of the node in 1 s to follow)",
    ) in lines
    assert (
        "skip",
        "wis2-relay",
        "no relay figure from the watcher for 3 hours (it puts one only while the node publishes)",
    ) in lines
    assert ("skip", "wis2-gdc", f"no discovery records in stacks/{SETTINGS.stack}/metadata to look for") not in lines
    without = run_verify(aws, node, "--json", "--no-wis2")
    assert wis2_lines(json.loads(without.stdout)) == [] and without.returncode == 0


def test_status_shows_what_the_watcher_reported(aws, node):
    now = datetime.datetime.now(datetime.UTC)
    event = example("wmem-gc-404-report", CENTRE)
    watcher_reported(aws, events=[event_line(parse(json.dumps(event).encode()), "gb-one")])
    run = run_verify(aws, node, command="status")
    screen = run.stdout.splitlines()
    assert run.returncode == 0, run.stdout
    assert len(screen) <= 24
    text = run.stdout
    assert f"wis2 watcher the node's watcher hears 2 Global Brokers ({now:%H:}" in text
    assert "wis2 relays  2 Global Brokers relayed the node's latest message" in text
    assert "wis2 alerts  " in text, text
    assert f"ERROR from {event['source']}: Cannot download data granule" in text


def test_the_shipped_catalogue_gives_one_broker_per_operator_wss_first(tmp_path):
    brokers, catalogues = global_endpoints()
    assert {b.name: (b.transport, b.port) for b in brokers} == {
        "fr-meteofrance-global-broker": ("wss", 443),
        "br-inmet-global-broker": ("wss", 443),
        "cn-cma-global-broker": ("mqtts", 8883),
        "us-noaa-global-broker": ("mqtts", 8883),
    }
    assert catalogues == gdc.catalogues()


@pytest.mark.parametrize(
    "row,named",
    [
        ("global-broker,xx,gb.example.org,1883,mqtt,", "plain mqtt ('gb.example.org') is for loopback only"),
        ("global-broker,xx,gb.example.org,443,ftp,", "transport 'ftp', expected wss or mqtts"),
        ("global-broker,xx,gb.example.org,port,wss,/mqtt", "port 'port', expected a number"),
        ("global-discovery-catalogue,xx,gdc.example.org,80,http,/", "'http://gdc.example.org/' is not an https URL"),
    ],
)
def test_a_bad_catalogue_is_refused_naming_the_row(tmp_path, row, named):
    path = tmp_path / "endpoints.csv"
    path.write_text(f"service,operator,host,port,transport,path\n{row}\n")
    with pytest.raises(SettingsError, match="--global-endpoints") as refused:
        Wis2Options.from_catalogue(path)
    assert named in str(refused.value)
    run = subprocess.run(
        [sys.executable, "-m", "wis2node", "verify", "--stack", SETTINGS.stack, "--global-endpoints", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and named in run.stderr and "Traceback" not in run.stderr
