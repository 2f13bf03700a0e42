"""The demo: a local node, a Global Broker's subscription, a publication and a download."""

from __future__ import annotations

import datetime
import http.client
import json
import queue
import socket
import ssl
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt

from wis2node.endpoints import PUBLISHER_USER, READ_ONLY_PASSWORD, READ_ONLY_USER
from wis2node.local import LocalNode
from wis2node.notification import build_notification, verify_integrity
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


def _download(node: LocalNode, href: str) -> bytes:
    """GET the canonical link, sending the node's FQDN (SNI and Host) to its loopback port."""
    url = urlsplit(href)
    context = ssl.create_default_context(cafile=str(node.ca_file))
    raw = socket.create_connection(("127.0.0.1", node.ports.https), timeout=10)
    connection = http.client.HTTPSConnection(url.hostname, node.ports.https, context=context)
    connection.sock = context.wrap_socket(raw, server_hostname=url.hostname)
    connection.request("GET", url.path, headers={"Host": url.hostname})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"GET {href} answered {response.status}")
    return body


def run(settings: NodeSettings) -> int:
    say = lambda text: print(f"  {text}")  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="wis2-demo-") as workdir, LocalNode(settings, Path(workdir)) as node:
        print(f"1. local node for {settings.centre_id}: mosquitto and nginx from the rendered files")
        say(f"MQTTS 127.0.0.1:{node.ports.mqtts}   HTTPS 127.0.0.1:{node.ports.https}   (self-signed CA)")

        messages: queue.Queue = queue.Queue()
        subscriber = _client(node, READ_ONLY_USER, READ_ONLY_PASSWORD)
        subscriber.on_message = lambda c, u, message: messages.put(message)
        subscribed = queue.Queue()
        subscriber.on_subscribe = lambda *a: subscribed.put(True)
        subscriber.connect("127.0.0.1", node.ports.mqtts)
        subscriber.loop_start()
        branch = f"origin/a/wis2/{settings.centre_id}/#"
        subscriber.subscribe(branch, qos=1)
        subscribed.get(timeout=10)
        print(f"2. a Global Broker subscribes as {READ_ONLY_USER}/{READ_ONLY_PASSWORD} over MQTTS to {branch}")

        target = node.public_dir / SAMPLE_TOPIC / SAMPLE_NAME
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(SAMPLE)
        href = f"https://{settings.fqdn}/{SAMPLE_TOPIC}/{SAMPLE_NAME}"
        notification = build_notification(
            data_id=f"{settings.centre_id}/{SAMPLE_TOPIC}/{SAMPLE_NAME}", href=href, content=SAMPLE,
            media_type="application/bufr", observed=datetime.datetime(2026, 11, 24, tzinfo=datetime.timezone.utc))
        topic = f"origin/a/wis2/{settings.centre_id}/{SAMPLE_TOPIC}"
        publisher = _client(node, PUBLISHER_USER, node.publisher_password)
        publisher.connect("127.0.0.1", node.ports.mqtts)
        publisher.loop_start()
        publisher.publish(topic, json.dumps(notification), qos=1).wait_for_publish(10)
        print(f"3. the publisher announces {SAMPLE_NAME} ({len(SAMPLE)} bytes) on {topic}")

        received = messages.get(timeout=10)
        message = json.loads(received.payload)
        link = next(link for link in message["links"] if link["rel"] == "canonical")
        print(f"4. the subscriber receives notification {message['id']} on {received.topic}")
        say(f"canonical link {link['href']}")

        body = _download(node, link["href"])
        intact = verify_integrity(message, body)
        print(f"5. download over HTTPS: {len(body)} bytes, sha512 {'matches' if intact else 'DOES NOT MATCH'}")
        for client in (publisher, subscriber):
            client.disconnect()
            client.loop_stop()
        print("6. stopping the local node")
    return 0 if intact else 1
