"""The agent's one connection to the local broker, as the publisher account, shared by its workers."""

from __future__ import annotations

import secrets
import threading
from typing import TYPE_CHECKING

from wis2node.node.rules import Rejected

if TYPE_CHECKING:
    import paho.mqtt.client as mqtt

ACK_TIMEOUT = 10


class BrokerUnavailable(Exception):
    """Try again later: the event stays in the queue."""


def new_client_id() -> str:
    """An MQTT client id nobody can guess, so nobody can connect with it and take the publisher's place.

    Per start, not stored: the agent needs no session on the broker (an event leaves the queue
    only once its PUBACK is in, so a connection lost loses nothing) and connects with a clean
    start; reconnects within one run reuse the id, so a half-open old connection is replaced.
    """
    return f"wis2-agent-{secrets.token_hex(16)}"


class Publisher:
    """Connects on demand, publishes at QoS 1 and waits for the broker's acknowledgement."""

    def __init__(self, host: str, port: int, user: str, password: str):
        self.host, self.port, self.user, self.password = host, port, user, password
        self.client_id = new_client_id()
        self._mqtt: mqtt.Client | None = None
        self._connecting = threading.Lock()
        self._acked: dict[int, int] = {}
        self._ack = threading.Condition()

    def connect(self):
        """The connected client: the current one, or a new connection (raises BrokerUnavailable)."""
        with self._connecting:
            return self._connect()

    def publish(self, topic: str, payload: str) -> None:
        """Publish at QoS 1; return once the broker has acknowledged it."""
        import paho.mqtt.client as mqtt

        client = self.connect()
        info = client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(mqtt.error_string(info.rc))
        with self._ack:
            if not self._ack.wait_for(lambda: info.mid in self._acked, timeout=ACK_TIMEOUT):
                raise BrokerUnavailable(f"no acknowledgement within {ACK_TIMEOUT} s")
            reason = self._acked.pop(info.mid)
        if reason >= 0x80:
            raise Rejected(f"{topic}: the broker refused the publication (reason code {reason})")

    def reset(self) -> None:
        """Drop the connection: the next publication connects again."""
        with self._connecting:
            self._disconnect()

    def _connect(self):
        import paho.mqtt.client as mqtt

        if self._mqtt is not None and self._mqtt.is_connected():
            return self._mqtt
        self._disconnect()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        client.username_pw_set(self.user, self.password)
        client.max_inflight_messages_set(100)

        def on_publish(client, userdata, mid, reason_code, properties):
            with self._ack:
                self._acked[mid] = reason_code.value
                self._ack.notify_all()

        connected = threading.Event()
        client.on_publish = on_publish
        client.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure else None
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as err:
            raise BrokerUnavailable(str(err)) from None
        client.loop_start()
        if not connected.wait(5):
            client.loop_stop()
            raise BrokerUnavailable("could not log in to the broker")
        self._mqtt = client
        return client

    def _disconnect(self) -> None:
        if self._mqtt is not None:
            self._mqtt.disconnect()
            self._mqtt.loop_stop()
            self._mqtt = None
