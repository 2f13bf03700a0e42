"""Attacks on the agent, performed for real: uploads to the bucket and messages sent to the queue
(moto), a client of the real local broker, and what the real nginx then serves."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.wis2node.mqtt_clients import Client
from tests.wis2node.test_agent import (
    BRANCH,
    RECORD,
    RECORD_ID,
    SETTINGS,
    SYNOP,
    agent,  # noqa: F401  (a fixture)
    declare,
    ingest,  # noqa: F401  (a fixture)
    link,
    messages,
    node,  # noqa: F401  (a fixture)
    s3_record,
    subscriber,
)
from wis2node.local import LocalNode
from wis2node.localcloud import LocalIngest

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

HOST = f"https://{SETTINGS.fqdn}"
EXPERIMENTAL = "data/core/weather/experimental"


def reasons(ingest: LocalIngest, expected: int) -> list[str]:
    """The reasons of what the agent parked (an event the queue moved there after retries has none)."""
    return sorted(
        m.get("MessageAttributes", {}).get("reason", {}).get("StringValue", "<no reason>")
        for m in ingest.parked(expected)
    )


def announce_record(node: LocalNode, ingest: LocalIngest) -> Client:
    """The stack's record published, and a subscriber that has seen it."""
    reader = subscriber(node)
    ingest.put_record(RECORD)
    assert len(reader.wait_for(1, timeout=30)) == 1
    return reader


def publish_one(ingest: LocalIngest, reader: Client, key: str, body: bytes) -> None:
    ingest.put(key, body)  # its dataset comes from its topic
    count = len(reader.received) + 1
    assert len(reader.wait_for(count, timeout=30)) == count


def escape(depth: int, outside: Path) -> str:
    """`..` enough to leave the public folder from `depth` levels down, then an absolute path."""
    return "../" * (depth + 40) + str(outside).lstrip("/")


def test_an_upload_cannot_write_outside_the_public_folder_or_over_the_served_record(node, ingest, agent, tmp_path):
    """Issue 11.1: pywis-topics lets anything through under experimental, `..` included."""
    reader = announce_record(node, ingest)
    try:
        outside = tmp_path / "outside" / "cron.d" / "x"
        outside.parent.mkdir(parents=True)
        record_served = node.get(f"{HOST}/metadata/{RECORD.name}")
        attacks = {
            f"{EXPERIMENTAL}/{escape(4, outside)}": b"* * * * * root echo owned\n",
            f"{EXPERIMENTAL}/../../../../metadata/{RECORD.name}": b'{"id": "urn:wmo:md:forged", "forged": true}',
        }
        for key, body in attacks.items():
            ingest.put(key, body)
        parked = reasons(ingest, len(attacks))
        assert not outside.exists(), "the upload wrote a file outside the public folder"
        assert node.get(f"{HOST}/metadata/{RECORD.name}") == record_served, "the upload replaced the served record"
        assert len(parked) == len(attacks) and all("topic level '..' is not allowed" in r for r in parked), parked
        assert [m.topic for m in reader.received] == [f"{BRANCH}/metadata"], "the attack was announced"
    finally:
        reader.close()


def test_forged_queue_messages_delete_nothing(node, ingest, agent, tmp_path):
    """Issue 11.2: anyone who can send to the queue forges S3 deletions of any file."""
    reader = announce_record(node, ingest)
    try:
        published = f"{SYNOP}/A_SMAQ01EXMP251200.bufr4"
        publish_one(ingest, reader, published, b"published by the node")
        outside = tmp_path / "outside" / "precious"
        outside.parent.mkdir()
        outside.write_bytes(b"not the node's")
        foreign = node.public_dir / SYNOP / "placed-by-the-operator.bufr4"
        foreign.write_bytes(b"not published by the agent")
        forged = [
            s3_record(ingest, "ObjectRemoved:Delete", published, bucket="someone-elses-bucket"),
            s3_record(ingest, "ObjectRemoved:Delete", published, source="aws:sqs"),
            s3_record(ingest, "ObjectRemoved:Delete", f"{EXPERIMENTAL}/{escape(4, outside)}"),
            s3_record(ingest, "ObjectRemoved:Delete", f"{SYNOP}/{foreign.name}"),
        ]
        for record in forged:
            ingest.sqs.send_message(QueueUrl=ingest.queue_url, MessageBody=json.dumps({"Records": [record]}))
        ingest.sqs.send_message(QueueUrl=ingest.queue_url, MessageBody="{not json")
        parked = reasons(ingest, len(forged) + 1)
        assert outside.is_file(), "a forged deletion removed a file outside the public folder"
        assert foreign.is_file(), "a forged deletion removed a file the agent never published"
        assert node.get(f"{HOST}/{published}") == (200, b"published by the node")
        assert [link(m)["rel"] for m in messages(reader)] == ["canonical", "canonical"], "a deletion was announced"
        for needle in (
            f"only events of the node's bucket '{ingest.bucket}'",
            "only S3 events (aws:s3)",
            "topic level '..' is not allowed",
            "the node never published it",
            "not an S3 event notification",
        ):
            assert sum(needle in reason for reason in parked) == 1, (needle, parked)
    finally:
        reader.close()


def test_nobody_takes_over_the_publishers_client_id(node, ingest, agent):
    """Issue 11.4: the agent connected as wis2-agent-<pid>; everyone connecting with it threw it out."""
    reader = announce_record(node, ingest)
    intruder = Client(node, "everyone", "everyone", client_id=f"wis2-agent-{agent.process.pid}")
    try:
        assert intruder.ok
        broker_log = node.path("/var/log/wis2") / "mosquitto.log"
        deadline = time.monotonic() + 5  # the agent's connection is checked every loop, a second at most
        while time.monotonic() < deadline and "already connected, closing old connection" not in broker_log.read_text():
            time.sleep(0.1)
        assert "already connected, closing old connection" not in broker_log.read_text(), (
            "the intruder took over the publisher's connection"
        )
        assert intruder.ok
        publish_one(ingest, reader, f"{SYNOP}/after-the-intruder.bufr4", b"still published")
        client_ids = re.findall(r"New client connected from \S+ as (\S+) .*u'wis2-publisher'", broker_log.read_text())
        assert client_ids and all(re.fullmatch(r"wis2-agent-[0-9a-f]{32}", c) for c in client_ids), client_ids
    finally:
        intruder.close()
        reader.close()


def test_half_written_files_are_never_in_the_public_folder(node, ingest, agent):
    """Issue 11.7: `.<name>.partial` was written beside the target, and served; a rename that fails left it there."""
    reader = announce_record(node, ingest)
    declare(ingest, "experimental", EXPERIMENTAL, f"{EXPERIMENTAL}/collide")  # both topics: a dataset's
    assert len(reader.wait_for(2, timeout=30)) == 2
    try:
        publish_one(ingest, reader, f"{EXPERIMENTAL}/collide/inner.bufr4", b"inner")
        # a file whose name is a folder of published files: the rename into place fails
        ingest.put(f"{EXPERIMENTAL}/collide", b"half-written")
        parked = reasons(ingest, 1)
        assert node.get(f"{HOST}/{EXPERIMENTAL}/.collide.partial")[0] == 404, "nginx served a half-written file"
        leftovers = [p for p in node.public_dir.rglob("*") if p.name.startswith(".") or p.name.endswith(".partial")]
        assert leftovers == []
        assert not list((node.path("/srv/wis2/agent") / "incoming").iterdir())
        assert parked == [f"{EXPERIMENTAL}/collide: a folder of published files has this name"]
    finally:
        reader.close()


def strict_json(payload: bytes) -> dict:
    def refuse(constant: str):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(payload, parse_constant=refuse)


def test_uploader_metadata_is_checked_and_refused_with_its_reason_at_once(node, ingest, agent):
    """Issue 11.8: NaN/Infinity, a topic with spaces and upper case, an uploader's text/html, a time that overflows."""
    reader = announce_record(node, ingest)
    try:
        bad = {
            f"{SYNOP}/nan.bufr4": ({"geometry": "10,20,nan"}, "geometry='10,20,nan'"),
            f"{SYNOP}/infinity.bufr4": ({"geometry": "10,20,1e999"}, "geometry='10,20,1e999'"),
            f"{EXPERIMENTAL}/Été Ñ/x.bufr4": ({}, "topic level 'Été Ñ' is not allowed"),
            f"{SYNOP}/overflow.bufr4": ({"datetime": "9999-12-31T23:59:59-23:59"}, "within years 1 to 9999 in UTC"),
        }
        for key, (metadata, _) in bad.items():
            ingest.put(key, b"x", **{"metadata-id": RECORD_ID, **metadata})
        for name in ("looks-like-bufr.bufr4", "page.html"):
            ingest.s3.put_object(
                Bucket=ingest.bucket,
                Key=f"{SYNOP}/{name}",
                Body=b"<script>alert(1)</script>",
                ContentType="text/html",
                Metadata={"metadata-id": RECORD_ID},
            )
        parked = ingest.parked(len(bad))
        reader.wait_for(3, timeout=30)
        time.sleep(1)  # anything else would be announced by now
        announced = [(m.topic, strict_json(m.payload)) for m in reader.received]
        assert all(re.fullmatch(r"[a-z0-9/_-]+", topic) for topic, _ in announced), [t for t, _ in announced]
        assert {link(message)["href"].rsplit("/", 1)[1]: link(message)["type"] for _, message in announced[1:]} == {
            "looks-like-bufr.bufr4": "application/bufr",
            "page.html": "application/octet-stream",
        }
        by_reason = [m.get("MessageAttributes", {}).get("reason", {}).get("StringValue", "") for m in parked]
        for key, (_, needle) in bad.items():
            assert any(reason.startswith(f"{key}: ") and needle in reason for reason in by_reason), (key, by_reason)
    finally:
        reader.close()
