"""A stand-in Global Broker on loopback: its own mosquitto, and a relay that subscribes to a node's
origin/a/wis2/<centre-id>/# (as everyone, as a Global Broker does) and republishes what it hears on
its own broker, unchanged, as a Global Broker does. WMEs and cache notifications are published on it
directly by the tests, as the Global Services would."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import paho.mqtt.client as mqtt

from wis2node.endpoints import READ_ONLY_PASSWORD, READ_ONLY_USER
from wis2node.local import LocalNode, _stop, _wait_for_port, free_port

EXAMPLES = Path(__file__).parent / "wme-examples"


def example(name: str, centre_id: str, **changes) -> dict:
    """A WME of the specification's examples, about centre_id, with a fresh id unless one is given."""
    event = json.loads((EXAMPLES / f"{name}.json").read_text())
    event["subject"] = centre_id
    event["id"] = str(uuid.uuid4())
    event.update(changes)
    return event


class StandInGlobalBroker:
    def __init__(self, name: str, workdir: Path, node: LocalNode):
        self.name, self.node = name, node
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            "log_dest stderr\nlog_type error\n"
        )
        self.broker = None
        self.relay = None
        self.publisher = None

    def start(self) -> StandInGlobalBroker:
        self.start_broker()
        relay = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"relay-{self.name}", protocol=mqtt.MQTTv5)
        relay.username_pw_set(READ_ONLY_USER, READ_ONLY_PASSWORD)
        relay.on_connect = lambda c, u, f, rc, p: c.subscribe(f"origin/a/wis2/{self.node.settings.centre_id}/#", 1)
        relay.on_message = lambda c, u, m: self._forward(m)
        relay.connect("127.0.0.1", self.node.ports.mqtt_local)
        relay.loop_start()
        self.relay = relay
        time.sleep(0.3)
        return self

    def start_broker(self) -> None:
        log = (self.workdir / "mosquitto.log").open("ab")
        self.broker = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=log, stderr=log)
        _wait_for_port(self.port, self.broker, f"mosquitto of {self.name}")
        self.publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.publisher.connect("127.0.0.1", self.port)
        self.publisher.loop_start()

    def stop_broker(self) -> None:
        if self.publisher is not None:
            self.publisher.disconnect()
            self.publisher.loop_stop()
            self.publisher = None
        _stop(self.broker)

    def _forward(self, message) -> None:
        if self.publisher is not None and self.broker.poll() is None:
            self.publisher.publish(message.topic, message.payload, qos=1)

    def publish(self, topic: str, payload: dict | bytes) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.publisher.publish(topic, body, qos=1).wait_for_publish(5)

    def as_config(self) -> dict:
        return {"name": self.name, "host": "127.0.0.1", "port": self.port, "transport": "mqtt"}

    def stop(self) -> None:
        if self.relay is not None:
            self.relay.disconnect()
            self.relay.loop_stop()
        self.stop_broker()


@contextmanager
def stand_in_brokers(node: LocalNode, folder: Path, names: tuple[str, ...] = ("gb-one", "gb-two")) -> Iterator[list]:
    """Two Global Brokers relaying the node (the watcher and verify need at least two), stopped after."""
    started = [StandInGlobalBroker(name, folder / name, node).start() for name in names]
    try:
        yield started
    finally:
        for broker in started:
            broker.stop()
