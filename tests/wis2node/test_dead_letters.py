"""`python -m wis2node dead-letters`: the refused events with their reasons, and replaying them after a fix."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from tests.wis2node.test_agent import RECORD, SYNOP, agent, ingest, messages, node, subscriber  # noqa: F401
from wis2node.localcloud import run_environment
from wis2node.stackfile import ROOT

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

STACK = "aq-examplemet-test"


def dead_letters(ingest, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wis2node", "dead-letters", *arguments, "--stack", STACK],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=run_environment(ingest.environment),
        timeout=120,
    )


def wait_for(condition, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return False


def test_a_refused_file_is_listed_with_its_reason_and_announced_after_the_fix(node, ingest, agent):
    reader = subscriber(node)
    record_id = json.loads(RECORD.read_text())["id"]
    key = f"{SYNOP}/A_SMAQ01EXMP250600.bufr4"
    ingest.put(key, b"BUFR early", **{"metadata-id": record_id})  # before its dataset's record: refused
    parked = ingest.parked(1)
    assert parked, "the agent parked nothing"
    for message in parked:  # back where an operator finds it
        ingest.sqs.change_message_visibility(
            QueueUrl=ingest.dead_letter_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )

    listed = dead_letters(ingest, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entries = json.loads(listed.stdout)
    assert [entry["key"] for entry in entries] == [key]
    assert "no discovery metadata record of the node declares it" in entries[0]["reason"]
    assert entries[0]["event"].startswith("ObjectCreated")
    again = dead_letters(ingest, "list").stdout  # listing took nothing away
    assert entries[0]["id"] in again and again.rstrip().endswith("1 events in aq-examplemet-test-wis2-ingest-failed")

    ingest.put_record(RECORD)  # the fix: the dataset's record
    assert dead_letters(ingest, "redrive").returncode == 2  # nothing chosen: nothing done
    replayed = dead_letters(ingest, "redrive", entries[0]["id"])
    assert replayed.returncode == 0 and "replayed" in replayed.stdout, replayed.stdout + replayed.stderr
    assert wait_for(lambda: any(m["properties"]["data_id"].endswith(key.rsplit("/", 1)[1]) for m in messages(reader)))
    assert json.loads(dead_letters(ingest, "list", "--json").stdout) == []
    assert node.public_dir.joinpath(key).read_bytes() == b"BUFR early"
    reader.close()


def test_an_event_whose_object_is_gone_is_kept_unless_dropped(node, ingest, agent):
    key = f"{SYNOP}/A_SMAQ01EXMP250700.bufr4"
    ingest.put(key, b"BUFR", **{"metadata-id": "urn:wmo:md:aq-examplemet-test:no-such-dataset"})
    parked = ingest.parked(1)
    for message in parked:
        ingest.sqs.change_message_visibility(
            QueueUrl=ingest.dead_letter_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    ingest.s3.delete_object(Bucket=ingest.bucket, Key=key)  # its deletion is refused and parked too
    listing = lambda: json.loads(dead_letters(ingest, "list", "--json").stdout)  # noqa: E731
    assert wait_for(lambda: len(listing()) == 2)
    assert {entry["event"].split(":")[0] for entry in listing()} == {"ObjectCreated", "ObjectRemoved"}
    kept = dead_letters(ingest, "redrive", "--all")
    assert kept.returncode == 1 and "no longer in the bucket" in kept.stdout, kept.stdout + kept.stderr
    assert "nothing to replay" in kept.stdout
    assert [entry["key"] for entry in listing()] == [key, key]
    dropped = dead_letters(ingest, "redrive", "--all", "--drop")
    assert dropped.returncode == 0 and dropped.stdout.count("dropped") == 2
    assert listing() == []
