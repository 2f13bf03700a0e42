"""The demo: a file goes in through the ingest bucket and comes out as a notification and a download.

Everything runs on this machine: moto stands in for S3, SQS and SSM; the agent, mosquitto and
nginx run from the stack's rendered files.
"""

from __future__ import annotations

import json
import queue
import ssl
import tempfile
from pathlib import Path

import paho.mqtt.client as mqtt

from wis2node.endpoints import READ_ONLY_PASSWORD, READ_ONLY_USER
from wis2node.local import LocalNode
from wis2node.localcloud import AgentProcess, LocalIngest, moto_server, validator_home
from wis2node.metadata import metadata_dir
from wis2node.node.datasets import record_topics
from wis2node.node.nodeconfig import CONFIG_PATH
from wis2node.node.notification import verify_integrity
from wis2node.node.rules import topic_root
from wis2node.settings import NodeSettings

SAMPLE_TOPIC = "data/core/weather/surface-based-observations/synop"
SAMPLE_NAME = "A_SMAQ01EXMP240000_C_EXMP_20261124000000.bufr4"
SAMPLE = b"BUFR" + bytes(range(256)) * 4 + b"7777"  # stands in for an encoded observation


def _client(node: LocalNode, username: str, password: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set(username, password)
    context = ssl.create_default_context(cafile=str(node.ca_file))
    context.check_hostname = False  # the demo connects to 127.0.0.1; the certificate names the FQDN
    client.tls_set_context(context)
    return client


def run(settings: NodeSettings) -> int:
    say = lambda text: print(f"  {text}")  # noqa: E731
    # the record of the sample's dataset: the one declaring its topic (the topic decides the dataset)
    topic = f"{topic_root(settings.centre_id)}/{SAMPLE_TOPIC}"
    record_path = next(
        (
            path
            for path in sorted(metadata_dir(settings.stack).glob("*.json"))
            if topic in record_topics(json.loads(path.read_bytes()))
        ),
        None,
    )
    if record_path is None:
        raise SystemExit(
            f"the demo needs a discovery metadata record declaring {topic} in {metadata_dir(settings.stack)}"
        )
    with tempfile.TemporaryDirectory(prefix="wis2-demo-") as tmp, moto_server(settings.region) as aws:
        workdir = Path(tmp)
        home = validator_home(workdir / "validators")
        ingest = LocalIngest(aws, settings)
        with LocalNode(settings, workdir / "node", bucket=ingest.bucket) as node:
            ingest.ssm.put_parameter(
                Name=settings.parameter_name("publisher-password"), Type="SecureString", Value=node.publisher_password
            )
            agent = AgentProcess(node.path(CONFIG_PATH), aws, workdir / "agent.log", home=home)
            try:
                return _walk_through(settings, node, ingest, record_path, say)
            finally:
                agent.stop()
                print("7. stopping the agent, mosquitto and nginx")


def _walk_through(settings, node, ingest, record_path, say) -> int:
    print(f"1. local node for {settings.centre_id}: mosquitto and nginx from the rendered files, the agent,")
    say("and moto standing in for the ingest bucket and its queues")
    say(f"MQTTS 127.0.0.1:{node.ports.mqtts}   HTTPS 127.0.0.1:{node.ports.https}   (self-signed CA)")

    messages: queue.Queue = queue.Queue()
    subscriber = _client(node, READ_ONLY_USER, READ_ONLY_PASSWORD)
    subscriber.on_message = lambda c, u, message: messages.put(message)
    subscribed: queue.Queue[bool] = queue.Queue()
    subscriber.on_subscribe = lambda *a: subscribed.put(True)
    subscriber.connect("127.0.0.1", node.ports.mqtts)
    subscriber.loop_start()
    branch = f"{topic_root(settings.centre_id)}/#"
    subscriber.subscribe(branch, qos=1)
    subscribed.get(timeout=10)
    print(f"2. a Global Broker subscribes as {READ_ONLY_USER}/{READ_ONLY_PASSWORD} over MQTTS to {branch}")

    ingest.put_record(record_path)
    key = f"{SAMPLE_TOPIC}/{SAMPLE_NAME}"
    ingest.put(key, SAMPLE, datetime="2026-11-24T00:00:00Z")  # its dataset: from its topic
    print(f"3. the centre uploads the dataset's record and {SAMPLE_NAME} ({len(SAMPLE)} bytes):")
    say(f"s3://{ingest.bucket}/metadata/{record_path.name}")
    say(f"s3://{ingest.bucket}/{key}")

    intact = True
    for step in ("discovery metadata", "data"):
        received = messages.get(timeout=30)
        message = json.loads(received.payload)
        link = next(link for link in message["links"] if link["rel"] == "canonical")
        print(f"4. notification for the {step}: {message['properties']['data_id']}")
        say(f"topic {received.topic}")
        say(f"link  {link['href']}")
        status, body = node.get(link["href"])
        if status != 200:
            raise RuntimeError(f"GET {link['href']} answered {status}")
        ok = verify_integrity(message, body)
        intact = intact and ok
        print(f"5. download over HTTPS: {len(body)} bytes, sha512 {'matches' if ok else 'DOES NOT MATCH'}")
    subscriber.disconnect()
    subscriber.loop_stop()
    print(f"6. {'every' if intact else 'NOT every'} download matches its notification")
    return 0 if intact else 1
