"""Fan-out through the node's broker configuration against a stock mosquitto, in the same run.

The node: MQTTS, password file + ACL, persistence, as rendered for the example test stack.
The baseline: `mosquitto -p PORT` with its default configuration (plain MQTT, no ACL).
Same clients for both: N subscribers at QoS 1 and one publisher sending WNM-sized messages at
QoS 1. Prints deliveries per second for both, their ratio, and the resident memory of
mosquitto and nginx after the run.

    venv/bin/python bench/fanout.py [--subscribers 10] [--messages 2000]
"""

from __future__ import annotations

import argparse
import json
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from wis2node.endpoints import PUBLISHER_USER
from wis2node.local import LocalNode, free_port
from wis2node.node.notification import build_notification
from wis2node.stackfile import find_stack


def wnm_sized_payload(fqdn: str) -> bytes:
    """A real notification for a 1 KB file: what a Global Broker receives for one observation."""
    message = build_notification(
        data_id="aq-examplemet-test/data/core/weather/surface-based-observations/synop/sample.bufr4",
        href=f"https://{fqdn}/data/core/weather/surface-based-observations/synop/sample.bufr4",
        content=bytes(1024),
        media_type="application/bufr",
    )
    return json.dumps(message).encode()


def make_client(port: int, username=None, password=None, cafile=None) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    if username:
        client.username_pw_set(username, password)
    if cafile:
        context = ssl.create_default_context(cafile=cafile)
        context.check_hostname = False
        client.tls_set_context(context)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", port, keepalive=60)
    client.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"could not connect to 127.0.0.1:{port}")
    return client


def fan_out(
    port: int,
    topic: str,
    payload: bytes,
    subscribers: int,
    messages: int,
    reader=(None, None),
    writer=(None, None),
    cafile=None,
) -> float:
    """Deliveries per second from the first publish to the last delivery."""
    expected = subscribers * messages
    received = [0]
    last = [0.0]
    lock = threading.Lock()
    done = threading.Event()

    def on_message(client, userdata, message):
        with lock:
            received[0] += 1
            last[0] = time.perf_counter()
            if received[0] >= expected:
                done.set()

    clients = []
    for _ in range(subscribers):
        client = make_client(port, *reader, cafile=cafile)
        client.on_message = on_message
        subscribed = threading.Event()
        client.on_subscribe = lambda *a, event=subscribed: event.set()
        client.subscribe(topic.rsplit("/", 1)[0] + "/#", qos=1)
        subscribed.wait(10)
        clients.append(client)
    publisher = make_client(port, *writer, cafile=cafile)
    start = time.perf_counter()
    for _ in range(messages):
        publisher.publish(topic, payload, qos=1)
    # Done when every delivery arrived, or when none has arrived for 3 s (a broker may drop
    # messages once a client's queue is full: stock mosquitto queues 1000 per client, the node 2000).
    while not done.wait(0.5):
        if time.perf_counter() - max(last[0], start) > 3:
            break
    for client in clients + [publisher]:
        client.disconnect()
        client.loop_stop()
    if received[0] < expected:
        print(f"  note: {received[0]} of {expected} messages delivered (the rest dropped by the broker)")
    return received[0] / (last[0] - start)


def resident_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [int(child) for child in found]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--messages", type=int, default=2000)
    args = parser.parse_args()

    settings = find_stack("aq-examplemet-test").settings()
    topic = f"origin/a/wis2/{settings.centre_id}/data/core/weather/surface-based-observations/synop"
    payload = wnm_sized_payload(settings.fqdn)
    print(f"{args.subscribers} subscribers, {args.messages} messages of {len(payload)} bytes, QoS 1")

    stock_port = free_port()
    stock = subprocess.Popen(["mosquitto", "-p", str(stock_port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        baseline = fan_out(stock_port, topic, payload, args.subscribers, args.messages)
    finally:
        stock.terminate()
        stock.wait()

    with tempfile.TemporaryDirectory() as workdir, LocalNode(settings, Path(workdir)) as node:
        rate = fan_out(
            node.ports.mqtts,
            topic,
            payload,
            args.subscribers,
            args.messages,
            reader=("everyone", "everyone"),
            writer=(PUBLISHER_USER, node.publisher_password),
            cafile=str(node.ca_file),
        )
        broker_kib = resident_kib([node.broker.pid])
        web_kib = resident_kib(children(node.web.pid))

    ratio = rate / baseline
    print(f"stock mosquitto (plain MQTT, no ACL):        {baseline:10.0f} deliveries/s")
    print(f"node broker (MQTTS, ACL, persistence):       {rate:10.0f} deliveries/s")
    print(f"ratio node / stock:                          {ratio:10.2f}  (target >= 0.70)")
    print(
        f"resident memory after the run: mosquitto {broker_kib / 1024:.1f} MiB, "
        f"nginx (master + workers) {web_kib / 1024:.1f} MiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
