"""Planned-outage notices: validated against the WME schema, sent from the node's own broker by the
publisher, read by everyone; nobody else may write on the centre's monitor topic."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.wis2node.mqtt_clients import Client
from wis2node.endpoints import READ_ONLY_PASSWORD, READ_ONLY_USER
from wis2node.errors import SettingsError
from wis2node.local import LocalNode
from wis2node.localcloud import client, moto_server, run_environment
from wis2node.node.wis2events import schema_errors
from wis2node.notice import build
from wis2node.stackfile import ROOT, find_stack

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

SETTINGS = find_stack("aq-examplemet-test").settings()
CENTRE = SETTINGS.centre_id
MONITOR = f"monitor/a/wis2/{CENTRE}"
EXAMPLE = json.loads((ROOT / "tests" / "wis2node" / "wme-examples" / "wmem-wis2node-outage.json").read_text())


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with LocalNode(SETTINGS, tmp_path_factory.mktemp("node")) as running:
        yield running


def test_a_notice_has_the_shape_of_the_specifications_example_and_validates():
    event = build(
        CENTRE,
        "2026-01-05T14:00:00Z",
        "2026-01-05T17:00:00+00:00",
        "Synop missing for 3 hours",
        channel=f"origin/a/wis2/{CENTRE}/data/core/weather/surface-based-observations/synop",
    )
    assert schema_errors(event) == [] and schema_errors(EXAMPLE) == []
    assert set(event) == set(EXAMPLE) and set(event["data"]) == set(EXAMPLE["data"])
    assert event["source"] == event["subject"] == CENTRE
    assert event["data"]["time"] == {"interval": ["2026-01-05T14:00:00Z", "2026-01-05T17:00:00Z"]}
    assert event["data"]["content"]["title"] == "Data outage notice"
    again = build(CENTRE, "2026-01-05T15:00:00+01:00", "2026-01-05T17:00:00Z", "other words")
    assert again["id"] == event["id"], "the same interval is the same notice"
    cancel = build(CENTRE, "2026-01-05T14:00:00Z", "2026-01-05T17:00:00Z", "back to normal", cancel=True)
    assert cancel["data"]["ref"] == event["id"] and cancel["id"] != event["id"] and schema_errors(cancel) == []
    assert build(CENTRE, "..", "2026-01-05T17:00:00Z", "open start")["data"]["time"]["interval"][0] == ".."


@pytest.mark.parametrize(
    "start,end,message,channel,named",
    [
        ("yesterday", "2026-01-05T17:00:00Z", "x", "", "--start"),
        ("2026-01-05T14:00:00", "2026-01-05T17:00:00Z", "x", "", "--start"),  # no time zone
        ("2026-01-05T18:00:00Z", "2026-01-05T17:00:00Z", "x", "", "--start"),  # after the end
        ("..", "2026-01-05T17:00:00Z", " ", "", "--message"),
        ("..", "2026-01-05T17:00:00Z", "x" * 1001, "", "--message"),
        ("..", "2026-01-05T17:00:00Z", "x", "origin/a/wis2/xx-other/data", "--channel"),
    ],
)
def test_bad_arguments_are_named(start, end, message, channel, named):
    with pytest.raises(SettingsError, match=named):
        build(CENTRE, start, end, message, channel=channel)


def test_the_notice_goes_out_from_the_node_and_everyone_reads_it(node):
    reader = Client(node, READ_ONLY_USER, READ_ONLY_PASSWORD)  # as a Global Broker, over MQTTS
    reader.subscribe(f"{MONITOR}/#")
    command = [
        sys.executable,
        "-m",
        "wis2node",
        "notice",
        "--stack",
        SETTINGS.stack,
        "--start",
        "2026-01-05T14:00:00Z",
        "--end",
        "2026-01-05T17:00:00Z",
        "--message",
        "Synop missing",
        "--host",
        "127.0.0.1",
        "--mqtts-port",
        str(node.ports.mqtts),
        "--ca-file",
        str(node.ca_file),
    ]
    try:
        with moto_server(SETTINGS.region) as aws:
            client("ssm", aws).put_parameter(
                Name=SETTINGS.parameter_name("publisher-password"), Value=node.publisher_password, Type="SecureString"
            )
            for extra in ([], ["--cancel"]):
                run = subprocess.run(
                    command + extra, cwd=ROOT, env=run_environment(aws), capture_output=True, text=True, timeout=60
                )
                assert run.returncode == 0, run.stderr
        notice, withdrawal = [json.loads(m.payload) for m in reader.wait_for(2)]
    finally:
        reader.close()
    assert schema_errors(notice) == [] and schema_errors(withdrawal) == []
    assert notice["data"]["content"]["title"] == "Data outage notice"
    assert withdrawal["data"]["ref"] == notice["id"]
    assert f"notice {notice['id']} published on {MONITOR}" in run.stdout.replace("withdrawal of ", "")


def test_nobody_else_writes_on_the_monitor_topic(node):
    reader = Client(node, READ_ONLY_USER, READ_ONLY_PASSWORD)
    intruder = Client(node, READ_ONLY_USER, READ_ONLY_PASSWORD)
    reader.subscribe(f"{MONITOR}/#")
    try:
        forged = build(CENTRE, "..", "2026-01-05T17:00:00Z", "forged")
        for topic in (MONITOR, f"{MONITOR}/x"):
            assert intruder.publish(topic, json.dumps(forged).encode()) == 135  # MQTT 5: not authorized
        time.sleep(0.5)
        assert reader.received == []
    finally:
        reader.close()
        intruder.close()
