"""The agent end to end: moto (S3 + SQS + SSM, over HTTP) in, the real local node out."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from urllib.parse import quote_plus

import pytest
from pywis_pubsub.verification import data_verified

from tests.wis2node.mqtt_clients import V311, Client
from tests.wmo import ets_validate
from wis2node.local import LocalNode
from wis2node.localcloud import AgentProcess, LocalIngest, moto_server
from wis2node.metadata import metadata_dir
from wis2node.stackfile import find_stack

SETTINGS = find_stack("aq-examplemet-test").settings()
CENTRE = SETTINGS.centre_id
BRANCH = f"origin/a/wis2/{CENTRE}"
SYNOP = "data/core/weather/surface-based-observations/synop"
RECORD = next(metadata_dir(SETTINGS.stack).glob("*.json"))
RECORD_ID = json.loads(RECORD.read_text())["id"]


@pytest.fixture
def ingest(request):
    """The ingest bucket and queues in moto; `indirect` parametrisation sets the visibility timeout."""
    with moto_server(SETTINGS.region) as environment:
        yield LocalIngest(environment, SETTINGS, visibility_timeout=getattr(request, "param", 5))


@pytest.fixture
def node(tmp_path, ingest):
    with LocalNode(SETTINGS, tmp_path / "node", bucket=ingest.bucket) as running:
        ingest.ssm.put_parameter(Name=SETTINGS.parameter_name("publisher-password"), Type="SecureString",
                                 Value=running.publisher_password)
        yield running


def start_agent(node: LocalNode, ingest: LocalIngest, config: Path | None = None) -> AgentProcess:
    return AgentProcess(config or node.path("/etc/wis2/node.json"), ingest.environment, node.workdir / "agent.log")


@pytest.fixture
def agent(node, ingest):
    process = start_agent(node, ingest)
    yield process
    process.stop()


def subscriber(node: LocalNode, **kwargs) -> Client:
    reader = Client(node, "everyone", "everyone", **kwargs)
    reader.subscribe(f"{BRANCH}/#")
    return reader


def put_files(ingest: LocalIngest, name: str, count: int) -> list[str]:
    """Upload `count` small files of the example dataset; returns their keys."""
    keys = [f"{SYNOP}/{name}-{i:04d}.bufr4" for i in range(count)]
    for key in keys:
        ingest.put(key, key.encode(), **{"metadata-id": RECORD_ID})
    return keys


def s3_record(ingest: LocalIngest, event_name: str, key: str, *, bucket: str | None = None,
              source: str = "aws:s3", size: int = 0) -> dict:
    """An event record as S3 writes it (the key URL-encoded), to send to the queue by hand."""
    return {"eventVersion": "2.1", "eventSource": source, "awsRegion": SETTINGS.region, "eventName": event_name,
            "s3": {"bucket": {"name": bucket or ingest.bucket}, "object": {"key": quote_plus(key, safe="/"),
                                                                            "size": size}}}


def messages(reader: Client) -> list[dict]:
    return [json.loads(m.payload) for m in reader.received]


def link(message: dict) -> dict:
    return next(l for l in message["links"] if l["rel"] in ("canonical", "update", "deletion"))


FILES = {
    f"{SYNOP}/A_SMAQ01EXMP241200.bufr4": (os.urandom(900), {"metadata-id": RECORD_ID,
                                                            "datetime": "2026-11-24T12:00:00Z",
                                                            "geometry": "-62.5,-64.8,10"}),
    f"{SYNOP}/A_SMAQ01EXMP241300.bufr4": (os.urandom(5000), {"metadata-id": RECORD_ID,
                                                             "datetime": "2026-11-24T13:00:00Z"}),
    "data/core/weather/surface-based-observations/temp/A_USAQ01EXMP241200.bufr4": (
        os.urandom(2000), {"start-datetime": "2026-11-24T11:00:00Z", "end-datetime": "2026-11-24T12:00:00Z"}),
    "data/recommended/climate/surface-based-observations/daily/climat-2026-11.csv": (
        b"station,tmax\n89001,-2.5\n", {"cache": "false"}),
}


def test_files_are_announced_validated_and_downloadable(node, ingest, agent, tmp_path):
    reader = subscriber(node, persistent=False)
    try:
        ingest.put_record(RECORD)
        for key, (body, metadata) in FILES.items():
            ingest.put(key, body, **metadata)
        received = messages(reader) if reader.wait_for(len(FILES) + 1, timeout=30) else []
        topics = [m.topic for m in reader.received]
        assert len(received) == len(FILES) + 1
        # files are settled in parallel: the record must precede every file of its dataset
        # (files that name no dataset need not wait for it)
        record_at = topics.index(f"{BRANCH}/metadata")
        of_dataset = [n for n, m in enumerate(received) if m["properties"].get("metadata_id") == RECORD_ID]
        assert len(of_dataset) == 2 and record_at < min(of_dataset), "discovery metadata goes out before the data"
        by_key = {link(m)["href"].split("/", 3)[3]: (m, t) for m, t in zip(received, topics)}
        assert set(by_key) == {*FILES, f"metadata/{RECORD.name}"}
        for key, (message, topic) in by_key.items():
            report = ets_validate(message, tmp_path)
            assert report["summary"]["FAILED"] == 0, (key, report)
            assert link(message)["rel"] == "canonical"
            status, body = node.get(link(message)["href"])
            assert status == 200
            integrity = message["properties"]["integrity"]
            assert data_verified(body, link(message)["length"], integrity["method"], integrity["value"]), key
            if key.startswith("data/"):
                assert topic == f"{BRANCH}/{key.rsplit('/', 1)[0]}"
                assert body == FILES[key][0]
        synop = by_key[f"{SYNOP}/A_SMAQ01EXMP241200.bufr4"][0]
        assert synop["geometry"] == {"type": "Point", "coordinates": [-62.5, -64.8, 10.0]}
        assert synop["properties"]["metadata_id"] == RECORD_ID
        assert synop["properties"]["datetime"] == "2026-11-24T12:00:00Z"
        assert base64.b64decode(synop["properties"]["content"]["value"]) == FILES[f"{SYNOP}/A_SMAQ01EXMP241200.bufr4"][0]
        assert "content" not in by_key[f"{SYNOP}/A_SMAQ01EXMP241300.bufr4"][0]["properties"]  # too big to inline
        temp = by_key["data/core/weather/surface-based-observations/temp/A_USAQ01EXMP241200.bufr4"][0]["properties"]
        assert (temp["start_datetime"], temp["end_datetime"]) == ("2026-11-24T11:00:00Z", "2026-11-24T12:00:00Z")
        climat = by_key["data/recommended/climate/surface-based-observations/daily/climat-2026-11.csv"][0]
        assert climat["properties"]["cache"] is False
    finally:
        reader.close()


def test_a_record_racing_its_data_is_announced_once_and_first(node, ingest):
    """The record's event and its files' events settle in parallel: one announcement, before them."""
    reader = subscriber(node)
    ingest.put_record(RECORD)
    keys = put_files(ingest, "race", 20)
    agent = start_agent(node, ingest)  # all 21 events are waiting: they arrive in the same batches
    try:
        count_data_ids(reader, len(keys))
        time.sleep(1)  # a second announcement of the record would come now
        topics = [m.topic for m in reader.received]
        assert topics.count(f"{BRANCH}/metadata") == 1
        assert topics.index(f"{BRANCH}/metadata") == 0
        assert len(topics) == len(keys) + 1
    finally:
        reader.close()
        agent.stop()


def test_a_new_version_is_an_update_and_a_removal_a_deletion(node, ingest, agent):
    key = f"{SYNOP}/A_SMAQ01EXMP241400.bufr4"
    reader = subscriber(node)
    try:
        ingest.put_record(RECORD)
        ingest.put(key, b"first", **{"metadata-id": RECORD_ID})
        reader.wait_for(2, timeout=30)
        ingest.put(key, b"second version", **{"metadata-id": RECORD_ID})
        reader.wait_for(3, timeout=30)
        assert node.get(f"https://{SETTINGS.fqdn}/{key}") == (200, b"second version")
        ingest.s3.delete_object(Bucket=ingest.bucket, Key=key)
        reader.wait_for(4, timeout=30)
        rels = [link(m)["rel"] for m in messages(reader)[1:]]
        assert rels == ["canonical", "update", "deletion"]
        assert len({m["properties"]["data_id"] for m in messages(reader)[1:]}) == 1
        assert node.get(f"https://{SETTINGS.fqdn}/{key}")[0] == 404
    finally:
        reader.close()


def test_bad_input_is_parked_with_its_reason_and_nothing_is_published(node, ingest, tmp_path):
    config = json.loads(node.path("/etc/wis2/node.json").read_text())
    config["publishing"]["max_file_bytes"] = 10_000
    small = tmp_path / "node-small-limit.json"
    small.write_text(json.dumps(config))
    agent = start_agent(node, ingest, small)
    reader = subscriber(node)
    try:
        ingest.put_record(RECORD)
        reader.wait_for(1, timeout=30)
        long_id = "urn:wmo:md:" + "x" * 1900
        bad = {
            "data/core/weather/no-such-discipline/x.bufr4": (b"x", {}),
            f"{SYNOP}/too-big.bufr4": (os.urandom(20_000), {}),
            # the longest key S3 takes and file names allow, the inline data and a long metadata-id
            f"data/core/weather/experimental/{'a' * 240}/{'b' * 240}/{'c' * 240}/{'n' * 220}.bufr4": (
                os.urandom(3000), {"metadata-id": long_id}),
            f"{SYNOP}/no-dataset.bufr4": (b"x", {"metadata-id": "urn:wmo:md:aq-examplemet-test:unknown"}),
            f"{SYNOP}/bad-time.bufr4": (b"x", {"datetime": "yesterday"}),
        }
        for key, (body, metadata) in bad.items():
            ingest.put(key, body, **metadata)
        # an event for an object that is gone by the time the agent reads it
        ingest.sqs.send_message(QueueUrl=ingest.queue_url, MessageBody=json.dumps({"Records": [
            s3_record(ingest, "ObjectCreated:Put", f"{SYNOP}/vanished.bufr4", size=3)]}))
        parked = ingest.parked(len(bad) + 1)
        reasons = sorted(m["MessageAttributes"]["reason"]["StringValue"] for m in parked)
        assert len(reasons) == len(bad) + 1, reasons
        for needle in ("not a valid WIS2 topic", "over the limit", "over 8192 bytes", "no discovery metadata record",
                       "RFC 3339", "unreadable"):
            assert any(needle in reason for reason in reasons), (needle, reasons)
        ingest.put(f"{SYNOP}/good.bufr4", b"fine", **{"metadata-id": RECORD_ID})
        reader.wait_for(2, timeout=30)
        assert [link(m)["href"].rsplit("/", 1)[1] for m in messages(reader)] == [RECORD.name, "good.bufr4"]
        assert agent.running
    finally:
        reader.close()
        agent.stop()


def count_data_ids(reader: Client, expected: int, timeout: float = 60) -> set[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ids = {m["properties"]["data_id"] for m in messages(reader) if "/data/" in m["properties"]["data_id"]}
        if len(ids) >= expected:
            return ids
        time.sleep(0.2)
    return ids


def test_killed_agent_loses_nothing(node, ingest):
    reader = subscriber(node)
    ingest.put_record(RECORD)
    keys = put_files(ingest, "burst", 150)
    agent = start_agent(node, ingest)
    try:
        deadline = time.monotonic() + 30
        while len(reader.received) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        agent.kill()  # in the middle of the burst
        announced_before = len(reader.received)
        assert 0 < announced_before < len(keys) + 1
        agent = start_agent(node, ingest)
        ids = count_data_ids(reader, len(keys))
        assert ids == {f"{CENTRE}/{key}" for key in keys}, f"{len(keys) - len(ids)} files never announced"
    finally:
        reader.close()
        agent.stop()


@pytest.mark.parametrize("ingest, outage, files", [
    pytest.param(5, 3, 30, id="short-outage"),
    # With a 1 s visibility timeout, an agent that kept receiving during a 9 s outage would receive
    # each event about nine times, and the queue would move it to the dead-letter queue after five.
    pytest.param(1, 9, 10, id="longer-than-the-redrive"),
], indirect=["ingest"])  # `ingest` is the queue's visibility timeout
def test_broker_down_while_files_arrive_loses_nothing(node, ingest, agent, outage, files):
    """While the broker is down the agent takes no events, so none reaches maxReceiveCount."""
    reader = subscriber(node, client_id="gb-offline", persistent=True, protocol=V311)
    ingest.put_record(RECORD)
    reader.wait_for(1, timeout=30)
    reader.close()
    node.stop_broker()
    keys = put_files(ingest, "while-down", files)
    time.sleep(outage)  # the agent finds no broker and leaves the events queued
    assert agent.running
    assert ingest.parked(1, timeout=2) == []
    node.start_broker()
    reader = subscriber(node, client_id="gb-offline", persistent=True, protocol=V311)
    try:
        ids = count_data_ids(reader, len(keys))
        assert ids == {f"{CENTRE}/{key}" for key in keys}, f"{len(keys) - len(ids)} files never announced"
        assert ingest.parked(1, timeout=2) == []
    finally:
        reader.close()
