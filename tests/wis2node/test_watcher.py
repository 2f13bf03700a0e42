"""The watcher against the local node, two stand-in Global Brokers (mosquitto + relay) and moto."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid

import pytest

from tests.wis2node.global_broker import example, stand_in_brokers
from tests.wis2node.mqtt_clients import Client
from wis2node.endpoints import PUBLISHER_USER
from wis2node.local import LocalNode
from wis2node.localcloud import client, moto_server, run_environment
from wis2node.node.nodeconfig import parse as parse_config
from wis2node.node.watcher import (
    EVENT_PATTERN,
    Connection,
    Relays,
    Watcher,
    brokers_of,
    client_id,
    event_line,
    global_brokers,
)
from wis2node.node.wis2events import parse
from wis2node.stackfile import ROOT, find_stack

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

SETTINGS = find_stack("aq-examplemet-test").settings()
CENTRE = SETTINGS.centre_id
MONITOR = f"monitor/a/wis2/{CENTRE}"
DATA_TOPIC = f"origin/a/wis2/{CENTRE}/data/core/weather/surface-based-observations/synop"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with LocalNode(SETTINGS, tmp_path_factory.mktemp("node")) as running:
        yield running


@pytest.fixture
def brokers(node, tmp_path):
    with stand_in_brokers(node, tmp_path) as started:
        yield started


def config_for(node: LocalNode, brokers, state_dir, **wis2) -> dict:
    config = json.loads(node.path("/etc/wis2/node.json").read_text())
    config["wis2"].update({"state_dir": str(state_dir), "brokers": [b.as_config() for b in brokers], **wis2})
    return config


def notification(data_id: str) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "type": "Feature",
        "geometry": None,
        "properties": {"data_id": data_id, "pubtime": "2026-01-01T00:00:00Z"},
        "links": [],
    }


class WatcherProcess:
    def __init__(self, config: dict, path, environment, log):
        path.write_text(json.dumps(config))
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wis2node", "watcher", str(path)],
            cwd=ROOT,
            env=run_environment(environment),
            stdout=log.open("ab"),
            stderr=subprocess.STDOUT,
        )

    def wait_for_log(self, text: str, count: int = 1, timeout: float = 20) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            content = self.log.read_text() if self.log.exists() else ""
            if content.count(text) >= count:
                return content
            assert self.process.poll() is None, content
            time.sleep(0.1)
        raise AssertionError(f"{text!r} x{count} not in the log:\n{self.log.read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=20)


def alerts(sqs, queue_url, expected: int, timeout: float = 15) -> list[dict]:
    found: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(found) < expected:
        for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            found.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    time.sleep(1.5)  # and nothing more comes
    for message in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        found.append(json.loads(message["Body"]))
    return found


def test_events_about_the_centre_reach_sns_once_each_and_outages_lose_nothing(node, brokers, tmp_path):
    one, two = brokers
    with moto_server(SETTINGS.region) as aws:
        sns, sqs, ssm = client("sns", aws), client("sqs", aws), client("ssm", aws)
        topic = sns.create_topic(Name="alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        config = config_for(node, brokers, tmp_path / "state", interval=1)
        ssm.put_parameter(Name=config["wis2"]["alerts_topic_parameter"], Value=topic, Type="String")
        watcher = WatcherProcess(config, tmp_path / "node.json", aws, tmp_path / "watcher.log")
        try:
            watcher.wait_for_log("connected (", count=3)
            disconnected = example("wmem-gm-report", CENTRE)
            schema = example("wmem-gb-wnm-report", CENTRE)
            for broker in brokers:  # every Global Broker relays every event: one alert each
                broker.publish(MONITOR, disconnected)
                broker.publish(MONITOR, schema)
            one.publish(MONITOR, example("wmem-gm-report", "xx-othercentre"))  # about someone else
            one.publish(MONITOR, example("wmem-wis2node-outage", CENTRE, source=CENTRE))  # the node's own notice
            one.publish(MONITOR, b"{not json")
            one.publish(MONITOR, {**example("wmem-gm-report", CENTRE), "data": {"severity": "LOUD"}})
            received = alerts(sqs, queue, 2)
            assert sorted(m["Subject"] for m in received) == [
                "WIS2 ERROR: Global Broker WMN report",
                "WIS2 ERROR: WIS2 Node disconnected from all Global Brokers!",
            ]
            by_title = {m["Subject"]: m["Message"] for m in received}
            report = by_title["WIS2 ERROR: Global Broker WMN report"]
            assert "Said by:     io-wis2dev-global-broker" in report
            assert "WIS2 Notification Message not compliant with the defined schema" in report
            log = watcher.wait_for_log("malformed event", count=2)
            assert "not JSON" in log and "'LOUD'" in log

            one.stop_broker()  # an outage of one Global Broker: the other still speaks
            time.sleep(1)
            during = example("wmem-gc-404-report", CENTRE)
            two.publish(MONITOR, during)
            one.start_broker()  # back on the same port: the watcher reconnects and subscribes again
            watcher.wait_for_log("gb-one: connected again", timeout=30)
            after = example("wmem-gc-alert-report", CENTRE, source="de-dwd-global-cache")
            one.publish(MONITOR, after)
            received = alerts(sqs, queue, 2)
            assert sorted(m["Subject"] for m in received) == [
                "WIS2 CRITICAL: Metadata archive is older than 24 hours",
                "WIS2 ERROR: Cannot download data granule: https://example.org/404",
            ]
            log = watcher.wait_for_log("gb-one: disconnected")
            assert len([line for line in log.splitlines() if "gb-one:" in line and "retrying" in line]) == 1, (
                "one line per outage, not one per attempt"
            )

            metrics = client("cloudwatch", aws).list_metrics(Namespace="WIS2Node")["Metrics"]
            severities = {
                d["Value"]
                for m in metrics
                if m["MetricName"] == "WIS2Events"
                for d in m["Dimensions"]
                if d["Name"] == "Severity"
            }
            assert severities == {"ERROR", "CRITICAL"}
            alarming = client("cloudwatch", aws).get_metric_statistics(
                Namespace="WIS2Node",
                MetricName="WIS2EventsAlarming",
                Dimensions=[{"Name": "Stack", "Value": SETTINGS.stack}],
                StartTime=time.time() - 600,
                EndTime=time.time() + 60,
                Period=60,
                Statistics=["Maximum"],
            )["Datapoints"]
            assert max(p["Maximum"] for p in alarming) >= 1, "ERROR and CRITICAL raise the wis2-events alarm"
            assert any(m["MetricName"] == "GlobalBrokersConnected" for m in metrics)
        finally:
            watcher.stop()

        # a restart keeps what was said: the same event again is not a new alert
        watcher = WatcherProcess(config, tmp_path / "node.json", aws, tmp_path / "watcher2.log")
        try:
            watcher.wait_for_log("connected (", count=3)
            one.publish(MONITOR, disconnected)
            fresh = example("wmem-gm-report", CENTRE)
            two.publish(MONITOR, fresh)
            assert [m["Subject"] for m in alerts(sqs, queue, 1)] == [
                "WIS2 ERROR: WIS2 Node disconnected from all Global Brokers!"
            ]
        finally:
            watcher.stop()


def test_relay_figures_count_the_brokers_that_relay(node, brokers, tmp_path):
    one, two = brokers
    put: list[list] = []
    config = parse_config(config_for(node, brokers, tmp_path / "state", relay_grace=0.5, cache_grace=0))
    watcher = Watcher(config, alert=lambda *a: None, put=put.append)
    connections = [Connection(b, watcher, client_id(config, b)) for b in brokers_of(config)]
    watcher.listening = lambda: sum(c.connected.is_set() for c in connections if c.broker.name != "local")
    for connection in connections:
        connection.start()
    publisher = Client(node, PUBLISHER_USER, node.publisher_password, transport="mqtt")

    def figures() -> dict:
        return {d["MetricName"]: d["Value"] for d in watcher.tick()}

    try:
        assert all(c.connected.wait(10) for c in connections)
        found = figures()
        assert "BrokersRelaying" not in found, "the node has published nothing: no figure, no alarm"
        assert found["GlobalBrokersConnected"] == 2
        first = notification(f"{CENTRE}/data/core/weather/synop/one.bufr")
        assert publisher.publish(DATA_TOPIC, json.dumps(first).encode()) == 0
        time.sleep(1.5)
        one.publish(DATA_TOPIC.replace("origin/", "cache/", 1), notification(first["properties"]["data_id"]))
        time.sleep(0.5)
        found = figures()
        assert found["BrokersRelaying"] == 2
        assert 0 <= found["RelayLatency"] < 1.5
        assert found["CacheCopiedShare"] == 100.0

        two.stop_broker()
        second = notification(f"{CENTRE}/data/core/weather/synop/two.bufr")
        assert publisher.publish(DATA_TOPIC, json.dumps(second).encode()) == 0
        time.sleep(1.5)
        found = figures()
        assert found["BrokersRelaying"] == 1, "one broker relays: under the alarm's threshold of 2"
        assert found["CacheCopiedShare"] == 50.0
        assert found["GlobalBrokersConnected"] == 1

        one.stop_broker()  # the watcher hears no Global Broker at all: the wis2-watcher-disconnected alarm
        time.sleep(0.5)
        assert figures()["GlobalBrokersConnected"] == 0
    finally:
        publisher.close()
        for connection in connections:
            connection.stop()


def test_the_catalogue_names_two_brokers_the_node_can_reach():
    reachable = global_brokers()
    assert len({b.host for b in reachable}) >= 2
    assert {b.transport for b in reachable} == {"wss"} and {b.port for b in reachable} == {443}


def test_a_threaded_watcher_stops_on_request(node, brokers, tmp_path):
    from wis2node.node import watcher as module

    config = config_for(node, brokers, tmp_path / "state", alerts_topic_arn="arn:aws:sns:eu-west-1:1:x")
    stop = threading.Event()
    with moto_server(SETTINGS.region) as aws:
        import boto3

        session = boto3.session.Session(region_name=SETTINGS.region)
        import os

        saved = {k: os.environ.get(k) for k in aws}
        os.environ.update(aws)
        try:
            runner = threading.Thread(
                target=module.run,
                args=(parse_config(config),),
                kwargs={"session": session, "stop": stop, "interval": 0.2},
            )
            runner.start()
            time.sleep(1)
            stop.set()
            runner.join(10)
            assert not runner.is_alive()
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def test_a_relay_heard_before_the_nodes_own_copy_still_counts():
    """The watcher's connections run in threads of their own: a Global Broker's copy may arrive first."""
    relays = Relays(grace=1, cache_grace=0)
    relays.relayed("gb-one", "m-1", 100.0)
    relays.published("m-1", "x/one", True, 100.2)
    relays.relayed("gb-two", "m-1", 100.5)
    relays.relayed("gb-one", "m-1", 100.6)  # the same broker again: counted once
    found = relays.figures(102.0)
    assert found["BrokersRelaying"] == 2
    assert found["RelayLatency"] == pytest.approx(0.3)


def test_the_event_log_line_reads_back():
    event = parse(json.dumps(example("wmem-gb-wnm-report", CENTRE, id="a]b")).encode())
    line = event_line(event, "gb-one")
    found = EVENT_PATTERN.search("INFO " + line)
    assert found and found["severity"] == event.severity and found["source"] == event.source
    assert found["title"] == " ".join(event.title.split()) and found["broker"] == "gb-one"
    assert "\n" not in line
