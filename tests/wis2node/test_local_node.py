"""The rendered broker and HTTPS server, run for real (mosquitto + nginx on loopback)."""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import subprocess
import time

import pytest

from tests.wis2node.mqtt_clients import V5, V311, Client
from wis2node.endpoints import PUBLISHER_USER
from wis2node.local import LocalNode
from wis2node.stackfile import find_stack

# Starts the node's daemons: not in the quick loop, `pytest -m "not slow"` (docs/DEVELOPING.md).
pytestmark = pytest.mark.slow

SETTINGS = find_stack("aq-examplemet-test").settings()
CENTRE = SETTINGS.centre_id
TOPIC = f"origin/a/wis2/{CENTRE}/data/core/weather/surface-based-observations/synop"


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    with LocalNode(SETTINGS, tmp_path_factory.mktemp("node")) as running:
        yield running


def publisher(node: LocalNode, **kwargs) -> Client:
    return Client(node, PUBLISHER_USER, node.publisher_password, **kwargs)


def everyone(node: LocalNode, **kwargs) -> Client:
    return Client(node, "everyone", "everyone", **kwargs)


def test_node_json_tells_clients_how_to_connect(node: LocalNode):
    described = json.loads((node.workdir / "node.json").read_text())
    assert described["ports"]["mqtts"] == node.ports.mqtts
    assert described["publisher"]["password"] == node.publisher_password
    assert described["ca_certificate"] == str(node.ca_file) and node.ca_file.is_file()


@pytest.mark.parametrize("transport", ["mqtts", "wss"])
@pytest.mark.parametrize("protocol", [V311, V5], ids=["mqtt3.1.1", "mqtt5"])
def test_everyone_receives_what_the_publisher_publishes(node, transport, protocol):
    reader = everyone(node, transport=transport, protocol=protocol)
    writer = publisher(node)
    try:
        assert reader.ok and writer.ok
        reader.subscribe(f"origin/a/wis2/{CENTRE}/#")
        payloads = [f"message {i} over {transport}".encode() for i in range(5)]
        for payload in payloads:
            assert writer.publish(TOPIC, payload) in (0, 16)  # success / no matching subscribers
        received = reader.wait_for(len(payloads))
        assert [m.payload for m in received] == payloads
        assert all(m.topic == TOPIC and m.qos == 1 and not m.retain for m in received)
    finally:
        reader.close()
        writer.close()


def test_everyone_cannot_publish_anywhere(node):
    watcher = publisher(node)  # reads the centre's branch
    intruder = everyone(node)
    try:
        watcher.subscribe(f"origin/a/wis2/{CENTRE}/#")
        for topic in (TOPIC, f"monitor/a/wis2/{CENTRE}/x", "origin/a/wis2/other-centre/data"):
            assert intruder.publish(topic, b"forged") == 135  # MQTT 5: not authorized
        time.sleep(0.5)
        assert watcher.received == []
    finally:
        watcher.close()
        intruder.close()


@pytest.mark.parametrize(
    "username,password", [(None, None), ("everyone", "wrong"), (PUBLISHER_USER, "wrong"), ("nobody", "everyone")]
)
def test_anonymous_and_wrong_passwords_are_refused(node, username, password):
    for protocol in (V311, V5):
        client = Client(node, username, password, protocol=protocol)
        try:
            assert not client.ok
            assert client.reason not in (None, 0)
        finally:
            client.close()


def test_publisher_cannot_write_outside_its_branch(node):
    writer = publisher(node)
    try:
        assert writer.publish(TOPIC, b"ok") in (0, 16)
        for topic in (
            "origin/a/wis2/fr-meteofrance/data/core/weather",
            f"cache/a/wis2/{CENTRE}/data",
            f"monitor/a/wis2/{CENTRE}/x",
            "anything",
        ):
            assert writer.publish(topic, b"forged") == 135, topic
    finally:
        writer.close()


def _handshake(port: int, version: ssl.TLSVersion, node: LocalNode) -> bool:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(node.ca_file)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions: the server must refuse
    context.minimum_version = context.maximum_version = version
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=SETTINGS.fqdn):
                return True
    except (ssl.SSLError, ConnectionResetError):
        return False


@pytest.mark.parametrize("listener", ["mqtts", "https"])
def test_only_tls_1_2_and_1_3_are_accepted(node, listener):
    port = getattr(node.ports, listener)
    assert _handshake(port, ssl.TLSVersion.TLSv1_2, node)
    assert _handshake(port, ssl.TLSVersion.TLSv1_3, node)
    assert not _handshake(port, ssl.TLSVersion.TLSv1, node)
    assert not _handshake(port, ssl.TLSVersion.TLSv1_1, node)


def test_plain_and_websocket_listeners_are_bound_to_loopback_only(node):
    listening = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True).stdout.split("\n")
    for port in (node.ports.mqtt_local, node.ports.websockets):
        addresses = [
            line.split()[3].rsplit(":", 1)[0].strip("[]")
            for line in listening
            if line.split() and line.split()[3].rsplit(":", 1)[1] == str(port)
        ]
        assert addresses, port
        for address in addresses:
            ip = ipaddress.ip_address(address)
            ip = getattr(ip, "ipv4_mapped", None) or ip
            assert ip.is_loopback, (port, address)
    for port in (node.ports.mqtts, node.ports.https):  # the public ones, for contrast, really do listen
        assert any(line.split()[3].endswith(f":{port}") for line in listening if line.split())


def _https(node: LocalNode, method: str, path: str):
    context = ssl.create_default_context(cafile=str(node.ca_file))
    connection = http.client.HTTPSConnection("127.0.0.1", node.ports.https, context=context, timeout=5)
    connection.putrequest(method, path, skip_accept_encoding=True)
    connection.putheader("Content-Length", "0")
    connection.endheaders()
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response, body


def test_https_serves_data_and_metadata_read_only(node):
    (node.public_dir / "data" / "sample.bufr4").write_bytes(b"BUFR sample")
    (node.public_dir / "metadata" / "dataset.json").write_bytes(b'{"id": "x"}')
    response, body = _https(node, "GET", "/data/sample.bufr4")
    assert response.status == 200 and body == b"BUFR sample"
    assert response.getheader("Strict-Transport-Security", "").startswith("max-age=")
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    response, body = _https(node, "HEAD", "/metadata/dataset.json")
    assert response.status == 200 and body == b"" and response.getheader("Content-Length") == "11"
    for method in ("PUT", "POST", "DELETE", "PATCH"):
        response, _ = _https(node, method, "/data/sample.bufr4")
        assert response.status == 405, method
    assert (node.public_dir / "data" / "sample.bufr4").read_bytes() == b"BUFR sample"
    response, body = _https(node, "GET", "/healthz")
    assert response.status == 200 and body == b"ok\n"


@pytest.mark.parametrize(
    "path",
    [
        "/data/",
        "/metadata/",
        "/",
        "/data/../tls/privkey.pem",
        "/data/%2e%2e/tls/privkey.pem",
        "/data/..%2ftls/privkey.pem",
        "/tls/privkey.pem",
        "/mosquitto/",
        "/../etc/mosquitto/passwd",
        "/data/link-out",
    ],
)
def test_listing_and_traversal_reveal_nothing(node, path):
    (node.public_dir / "data" / "listed-file.txt").write_text("x")
    link = node.public_dir / "data" / "link-out"
    if not link.is_symlink():
        link.symlink_to(node.tls_dir / "privkey.pem")
    response, body = _https(node, "GET", path)
    assert response.status in (400, 403, 404), (path, response.status)
    assert b"listed-file" not in body and b"PRIVATE KEY" not in body and b"everyone:" not in body


def test_offline_persistent_subscriber_loses_nothing_across_a_broker_restart(node):
    client_id = "gb-persistent"
    subscriber = everyone(node, client_id=client_id, persistent=True, protocol=V311)
    subscriber.subscribe(f"origin/a/wis2/{CENTRE}/#")
    subscriber.close()  # offline from here on

    writer = publisher(node, transport="mqtt")
    sent = [f"before restart {i}".encode() for i in range(50)]
    for payload in sent:
        assert writer.publish(TOPIC, payload) == 0
    writer.close()
    node.stop_broker()
    node.start_broker()
    writer = publisher(node, transport="mqtt")
    after = [f"after restart {i}".encode() for i in range(50)]
    for payload in after:
        assert writer.publish(TOPIC, payload) == 0
    writer.close()

    subscriber = everyone(node, client_id=client_id, persistent=True, protocol=V311)
    try:
        received = subscriber.wait_for(len(sent) + len(after))
        assert sorted(m.payload for m in received) == sorted(sent + after)
    finally:
        subscriber.close()
