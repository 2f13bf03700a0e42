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

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

SETTINGS = find_stack("aq-examplemet-test").settings()
CENTRE = SETTINGS.centre_id
BRANCH = f"origin/a/wis2/{CENTRE}"
SYNOP = "data/core/weather/surface-based-observations/synop"
RECORD = metadata_dir(SETTINGS.stack) / "surface-based-observations-synop.json"  # core, with GTS headers
RECORD_ID = json.loads(RECORD.read_text())["id"]
MODEL = metadata_dir(SETTINGS.stack) / "regional-model-short-range.json"  # recommended
MODEL_ID = json.loads(MODEL.read_text())["id"]
MODEL_TOPIC = "data/recommended/weather/prediction/forecast/short-range/deterministic/limited-area"


def declare(ingest: LocalIngest, name: str, *folders: str, record_id: str = "") -> str:
    """A record of the tests' own declaring these data folders' topics, put where Pulumi puts records."""
    record_id = record_id or f"urn:wmo:md:{CENTRE}:{name}"
    ingest.put(
        f"metadata/{name}.json",
        json.dumps(
            {
                "id": record_id,
                "type": "Feature",
                "links": [
                    {"rel": "items", "href": f"mqtts://{SETTINGS.fqdn}:8883", "channel": f"{BRANCH}/{folder}"}
                    for folder in folders
                ],
            }
        ).encode(),
    )
    return record_id


@pytest.fixture
def ingest(request):
    """The ingest bucket and queues in moto; `indirect` parametrisation sets the visibility timeout."""
    with moto_server(SETTINGS.region) as environment:
        yield LocalIngest(environment, SETTINGS, visibility_timeout=getattr(request, "param", 5))


@pytest.fixture
def node(tmp_path, ingest):
    with LocalNode(SETTINGS, tmp_path / "node", bucket=ingest.bucket) as running:
        ingest.ssm.put_parameter(
            Name=SETTINGS.parameter_name("publisher-password"), Type="SecureString", Value=running.publisher_password
        )
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
        ingest.put(key, key.encode())  # the dataset comes from the topic: no metadata-id needed
    return keys


def s3_record(
    ingest: LocalIngest, event_name: str, key: str, *, bucket: str | None = None, source: str = "aws:s3", size: int = 0
) -> dict:
    """An event record as S3 writes it (the key URL-encoded), to send to the queue by hand."""
    return {
        "eventVersion": "2.1",
        "eventSource": source,
        "awsRegion": SETTINGS.region,
        "eventName": event_name,
        "s3": {"bucket": {"name": bucket or ingest.bucket}, "object": {"key": quote_plus(key, safe="/"), "size": size}},
    }


def messages(reader: Client) -> list[dict]:
    return [json.loads(m.payload) for m in reader.received]


def link(message: dict) -> dict:
    return next(link for link in message["links"] if link["rel"] in ("canonical", "update", "deletion"))


FILES = {
    f"{SYNOP}/A_SMAQ01EXMP241200.bufr4": (
        os.urandom(900),
        {"metadata-id": RECORD_ID, "datetime": "2026-11-24T12:00:00Z", "geometry": "-62.5,-64.8,10"},
    ),
    f"{SYNOP}/A_SMAQ01EXMP241300.bufr4": (os.urandom(5000), {"datetime": "2026-11-24T13:00:00Z"}),
    f"{SYNOP}/A_SNAQ01EXMP241200.bufr4": (
        os.urandom(2000),
        {"start-datetime": "2026-11-24T11:00:00Z", "end-datetime": "2026-11-24T12:00:00Z"},
    ),
    f"{MODEL_TOPIC}/examplemet-2026112400-f006.grib2": (os.urandom(3000), {"cache": "false"}),
}


def test_files_are_announced_validated_and_downloadable(node, ingest, agent, tmp_path):
    reader = subscriber(node, persistent=False)
    try:
        ingest.put_record(RECORD)
        ingest.put_record(MODEL)
        for key, (body, metadata) in FILES.items():
            ingest.put(key, body, **metadata)
        received = messages(reader) if reader.wait_for(len(FILES) + 2, timeout=30) else []
        topics = [m.topic for m in reader.received]
        assert len(received) == len(FILES) + 2
        # files are settled in parallel: each dataset's record must precede every file of its dataset,
        # and each file carries the metadata_id its topic's record gives it
        for record_id, folder in ((RECORD_ID, SYNOP), (MODEL_ID, MODEL_TOPIC)):
            record_at = next(
                n
                for n, m in enumerate(received)
                if topics[n] == f"{BRANCH}/metadata" and m["properties"]["metadata_id"] == record_id
            )
            of_dataset = [
                n for n, m in enumerate(received) if m["properties"]["metadata_id"] == record_id and n != record_at
            ]
            assert of_dataset and record_at < min(of_dataset), "discovery metadata goes out before the data"
            assert all(topics[n] == f"{BRANCH}/{folder}" for n in of_dataset)
        by_key = {link(m)["href"].split("/", 3)[3]: (m, t) for m, t in zip(received, topics, strict=False)}
        assert set(by_key) == {*FILES, f"metadata/{RECORD.name}", f"metadata/{MODEL.name}"}
        for key, (message, topic) in by_key.items():
            report = ets_validate(message, tmp_path)
            assert report["summary"]["FAILED"] == 0, (key, report)
            assert link(message)["rel"] == "canonical"
            # WNM 1.4 (draft): data_id starts with the metadata identifier; every message has its metadata_id
            assert message["properties"]["data_id"].startswith(message["properties"]["metadata_id"])
            status, body = node.get(link(message)["href"])
            assert status == 200
            integrity = message["properties"]["integrity"]
            assert data_verified(body, link(message)["length"], integrity["method"], integrity["value"]), key
            if key.startswith("data/"):
                assert topic == f"{BRANCH}/{key.rsplit('/', 1)[0]}"
                assert body == FILES[key][0]
                assert message["properties"]["data_id"] == f"{message['properties']['metadata_id']}/{key}"
        record = by_key[f"metadata/{RECORD.name}"][0]["properties"]
        assert (record["metadata_id"], record["data_id"]) == (RECORD_ID, RECORD_ID)
        synop = by_key[f"{SYNOP}/A_SMAQ01EXMP241200.bufr4"][0]
        assert synop["geometry"] == {"type": "Point", "coordinates": [-62.5, -64.8, 10.0]}
        assert synop["properties"]["metadata_id"] == RECORD_ID
        assert synop["properties"]["datetime"] == "2026-11-24T12:00:00Z"
        assert synop["properties"]["gts"] == {"ttaaii": "SMAQ01", "cccc": "EXMP"}  # the dataset's GTS mapping
        assert (
            base64.b64decode(synop["properties"]["content"]["value"]) == FILES[f"{SYNOP}/A_SMAQ01EXMP241200.bufr4"][0]
        )
        assert "content" not in by_key[f"{SYNOP}/A_SMAQ01EXMP241300.bufr4"][0]["properties"]  # too big to inline
        period = by_key[f"{SYNOP}/A_SNAQ01EXMP241200.bufr4"][0]["properties"]
        assert (period["start_datetime"], period["end_datetime"]) == ("2026-11-24T11:00:00Z", "2026-11-24T12:00:00Z")
        assert "gts" not in period  # no row of the mapping matches its name
        model = by_key[f"{MODEL_TOPIC}/examplemet-2026112400-f006.grib2"][0]
        assert model["properties"]["cache"] is False and model["properties"]["metadata_id"] == MODEL_ID
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


def test_a_new_version_is_an_update_with_its_own_link_and_a_removal_a_deletion(node, ingest, agent, tmp_path):
    """WMO's pending amendment: an update's link identifies the version; the key keeps serving the latest."""
    key = f"{SYNOP}/A_SMAQ01EXMP241400.bufr4"
    versions = [b"first", b"second version", b"third version"]
    reader = subscriber(node)
    try:
        ingest.put_record(RECORD)
        for count, body in enumerate(versions, start=2):
            ingest.put(key, body)
            assert len(reader.wait_for(count, timeout=30)) == count
        ingest.s3.delete_object(Bucket=ingest.bucket, Key=key)
        reader.wait_for(5, timeout=30)
        announced = messages(reader)[1:]
        for message in announced:  # exactly one of canonical, update, deletion in each
            assert len([link for link in message["links"] if link["rel"] in ("canonical", "update", "deletion")]) == 1
            assert ets_validate(message, tmp_path)["summary"]["FAILED"] == 0
        assert [link(m)["rel"] for m in announced] == ["canonical", "update", "update", "deletion"]
        assert len({m["properties"]["data_id"] for m in announced}) == 1
        pubtimes = [m["properties"]["pubtime"] for m in announced]
        assert pubtimes == sorted(pubtimes) and len(set(pubtimes)) == 4, pubtimes  # each one newer
        hrefs = [link(m)["href"] for m in announced]
        assert hrefs[0] == hrefs[3] == f"https://{SETTINGS.fqdn}/{key}"
        assert len(set(hrefs[1:3])) == 2 and all(
            "/_versions/" in h and h.endswith(key.rsplit("/", 1)[1]) for h in hrefs[1:3]
        )
    finally:
        reader.close()
    # (checked after the deletion: each version was served, under its own link, until then)
    assert node.get(f"https://{SETTINGS.fqdn}/{key}")[0] == 404
    assert [node.get(h)[0] for h in hrefs[1:3]] == [404, 404], "a deleted key's versions are gone too"
    assert not list(node.public_dir.rglob("_versions/*/*"))


def test_each_version_is_served_as_its_notification_says(node, ingest, agent):
    key = f"{SYNOP}/A_SMAQ01EXMP241500.bufr4"
    reader = subscriber(node)
    try:
        ingest.put_record(RECORD)
        for count, body in enumerate((b"one", b"two", b"three"), start=2):
            ingest.put(key, body)
            assert len(reader.wait_for(count, timeout=30)) == count
        canonical, *updates = messages(reader)[1:]
        for message in updates:  # each update's own copy: the bytes its integrity value describes
            status, body = node.get(link(message)["href"])
            assert status == 200 and ets_ok_integrity(message, body)
        # the canonical link, the key, stays stable and serves the latest version
        assert link(canonical)["href"] == f"https://{SETTINGS.fqdn}/{key}"
        assert node.get(f"https://{SETTINGS.fqdn}/{key}") == (200, b"three")
    finally:
        reader.close()


def ets_ok_integrity(message: dict, body: bytes) -> bool:
    integrity = message["properties"]["integrity"]
    return data_verified(body, link(message)["length"], integrity["method"], integrity["value"])


def test_bad_input_is_parked_with_its_reason_and_nothing_is_published(node, ingest, tmp_path):
    config = json.loads(node.path("/etc/wis2/node.json").read_text())
    config["publishing"]["max_file_bytes"] = 10_000
    small = tmp_path / "node-small-limit.json"
    small.write_text(json.dumps(config))
    agent = start_agent(node, ingest, small)
    reader = subscriber(node)
    try:
        ingest.put_record(RECORD)
        long_folder = f"data/core/weather/experimental/{'a' * 240}/{'b' * 240}/{'c' * 240}"
        declare(ingest, "long", long_folder, record_id=f"urn:wmo:md:{CENTRE}:{'x' * 1000}")
        reader.wait_for(2, timeout=30)
        bad = {
            "data/core/weather/no-such-discipline/x.bufr4": (b"x", {}),
            f"{SYNOP}/too-big.bufr4": (os.urandom(20_000), {}),
            # the longest key S3 takes and file names allow, the inline data and a long metadata_id
            f"{long_folder}/{'n' * 220}.bufr4": (os.urandom(3000), {}),
            "data/core/weather/surface-based-observations/temp/undeclared.bufr4": (b"x", {}),
            f"{SYNOP}/disagrees.bufr4": (b"x", {"metadata-id": "urn:wmo:md:aq-examplemet-test:unknown"}),
            f"{SYNOP}/bad-time.bufr4": (b"x", {"datetime": "yesterday"}),
        }
        for key, (body, metadata) in bad.items():
            ingest.put(key, body, **metadata)
        # an event for an object that is gone by the time the agent reads it
        ingest.sqs.send_message(
            QueueUrl=ingest.queue_url,
            MessageBody=json.dumps(
                {"Records": [s3_record(ingest, "ObjectCreated:Put", f"{SYNOP}/vanished.bufr4", size=3)]}
            ),
        )
        parked = ingest.parked(len(bad) + 1)
        reasons = sorted(m["MessageAttributes"]["reason"]["StringValue"] for m in parked)
        assert len(reasons) == len(bad) + 1, reasons
        for needle in (
            "not a valid WIS2 topic",
            "over the limit",
            "over 8192 bytes",
            "temp: no discovery metadata record of the node declares it",
            f"metadata-id='urn:wmo:md:aq-examplemet-test:unknown', but its topic {BRANCH}/{SYNOP} is the "
            f"dataset {RECORD_ID}",
            "RFC 3339",
            "unreadable",
        ):
            assert any(needle in reason for reason in reasons), (needle, reasons)
        ingest.put(f"{SYNOP}/good.bufr4", b"fine", **{"metadata-id": RECORD_ID})  # one that agrees is fine
        reader.wait_for(3, timeout=30)
        assert [link(m)["href"].rsplit("/", 1)[1] for m in messages(reader)] == [RECORD.name, "long.json", "good.bufr4"]
        assert messages(reader)[2]["properties"]["metadata_id"] == RECORD_ID
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
        assert ids == {f"{RECORD_ID}/{key}" for key in keys}, f"{len(keys) - len(ids)} files never announced"
    finally:
        reader.close()
        agent.stop()


@pytest.mark.parametrize(
    "ingest, outage, files",
    [
        pytest.param(5, 3, 30, id="short-outage"),
        # With a 1 s visibility timeout, an agent that kept receiving during a 9 s outage would receive
        # each event about nine times, and the queue would move it to the dead-letter queue after five.
        pytest.param(1, 9, 10, id="longer-than-the-redrive"),
    ],
    indirect=["ingest"],
)  # `ingest` is the queue's visibility timeout
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
        assert ids == {f"{RECORD_ID}/{key}" for key in keys}, f"{len(keys) - len(ids)} files never announced"
        assert ingest.parked(1, timeout=2) == []
    finally:
        reader.close()
