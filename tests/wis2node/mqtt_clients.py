"""Real MQTT clients (paho-mqtt) for the tests: connect, subscribe, collect, publish."""

from __future__ import annotations

import ssl
import threading
import time
import uuid

import paho.mqtt.client as mqtt

from wis2node.local import LocalNode

V311, V5 = mqtt.MQTTv311, mqtt.MQTTv5


class Client:
    """A connected paho client that records what it receives."""

    def __init__(
        self,
        node: LocalNode,
        username: str | None,
        password: str | None,
        *,
        transport: str = "mqtts",
        protocol: int = V5,
        client_id: str | None = None,
        persistent: bool = False,
        cafile: str | None = None,
        session_expiry: int = 3600,
        host: str = "127.0.0.1",
        check_hostname: bool = True,
    ):
        self.received: list[mqtt.MQTTMessage] = []
        self.connected = threading.Event()
        self.reason: int | None = None
        self.session_present: bool | None = None
        self.acks: dict[int, int] = {}
        self.subacks: dict[int, list[int]] = {}
        self._acked = threading.Condition()
        client_id = client_id or f"test-{uuid.uuid4().hex[:8]}"
        kwargs = {}
        if protocol == V311:
            kwargs["clean_session"] = not persistent
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=protocol,
            transport="websockets" if transport == "wss" else "tcp",
            **kwargs,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if transport in ("mqtts", "wss"):
            self.client.tls_set(ca_certs=cafile or str(node.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
            # Off only where the test reaches the node by address: the chain is still verified.
            self.client.tls_insecure_set(not check_hostname)
        if transport == "wss":
            self.client.ws_set_options(path="/mqtt")
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, message: self.received.append(message)
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        port = {"mqtts": node.ports.mqtts, "wss": node.ports.https, "mqtt": node.ports.mqtt_local}[transport]
        properties = None
        connect_kwargs = {}
        if protocol == V5:
            connect_kwargs["clean_start"] = not persistent
            if persistent:
                properties = mqtt.Properties(mqtt.PacketTypes.CONNECT)
                properties.SessionExpiryInterval = session_expiry
        self.client.connect(host, port, keepalive=30, properties=properties, **connect_kwargs)
        self.client.loop_start()
        self.connected.wait(10)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.reason = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
        self.session_present = bool(flags.session_present)
        self.connected.set()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._acked:
            self.acks[mid] = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
            self._acked.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._acked:
            self.subacks[mid] = [code.value if hasattr(code, "value") else int(code) for code in reason_codes]
            self._acked.notify_all()

    @property
    def ok(self) -> bool:
        return self.connected.is_set() and self.reason == 0 and self.client.is_connected()

    def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe and, when connected, wait for the broker's SUBACK: a session closed before it
        may hold no subscription at all (a loaded machine took longer than a fixed pause)."""
        result, mid = self.client.subscribe(topic, qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        if not self.ok:
            time.sleep(0.2)
            return
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self.subacks, timeout=10), f"no SUBACK for {topic}"

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> int:
        """Publish and wait for the broker's acknowledgement; return its reason code (MQTT 5)."""
        info = self.client.publish(topic, payload, qos=qos)
        with self._acked:
            self._acked.wait_for(lambda: info.mid in self.acks, timeout=10)
        return self.acks.get(info.mid, -1)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
