"""The node agent: bucket events in, files on the data volume and WIS2 notifications out.

For each S3 event (through SQS) the agent copies the object under the node's public directory,
builds the WIS2 Notification Message, checks the topic (pywis-topics) and the message
(pywis-pubsub's test suite), publishes it at QoS 1 as the publisher account and deletes the
event only once the broker has acknowledged it. Events it cannot publish go to the dead-letter
queue with the reason; a broker that is down or an agent that is killed loses nothing, since
the event stays in the queue until it is acknowledged (at least once; a repeat carries the
same data_id).

    python -m wis2node agent [/etc/wis2/node.json]
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import json
import logging
import mimetypes
import os
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional
from urllib.parse import unquote_plus

from wis2node.notification import build_notification

LOG = logging.getLogger("wis2node.agent")
# Workers spend most of their time waiting for S3 and for the broker's acknowledgement; by
# Little's law, 100 files/s at 300 ms each needs 30 in progress. IN_FLIGHT bounds what the agent
# holds (received, not yet deleted), so a backlog stays in the queue rather than in memory.
WORKERS = 32
IN_FLIGHT = 64
# After a partial batch the poller waits this long before receiving again, so that a burst is
# taken ten events a request rather than one or two: fewer requests for SQS (and for moto, whose
# ReceiveMessage costs grow with the queue's depth), at the price of 50 ms of latency at most.
BATCH_WINDOW = 0.05
EVENT_MEMORY_DAYS = 14  # SQS keeps a message at most 14 days: no event comes back after that
METADATA_TYPE = "application/geo+json"
mimetypes.add_type("application/bufr", ".bufr4")
mimetypes.add_type("application/bufr", ".bufr")
mimetypes.add_type("application/grib", ".grib2")


class Rejected(Exception):
    """This event can never be published as it is: park it in the dead-letter queue."""


class BrokerUnavailable(Exception):
    """Try again later: the event stays in the queue."""


@dataclass
class Outcome:
    topic: str
    rel: str
    data_id: str


class State:
    """What the node has announced, on the data volume, so restarts keep update/deletion right."""

    def __init__(self, path: Path):
        self.lock = threading.RLock()  # the agent's workers share one connection
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # WAL without a sync per statement: a crash may forget the last few rows, and then a
        # redelivered event is announced again with the same data_id, which WIS2 tolerates.
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript("""
            CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, rel TEXT NOT NULL,
                                               seen REAL NOT NULL DEFAULT (unixepoch()));
            CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, live INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS metadata (id TEXT PRIMARY KEY, key TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS metadata_content (key TEXT PRIMARY KEY, sha512 TEXT NOT NULL);
        """)

    def rel_for(self, event_id: str, key: str, deleted: bool) -> str:
        """The same event always gets the same rel, even when it is redelivered."""
        with self.lock:
            return self._rel_for(event_id, key, deleted)

    def _rel_for(self, event_id: str, key: str, deleted: bool) -> str:
        row = self.db.execute("SELECT rel FROM events WHERE event_id = ?", (event_id,)).fetchone()
        if row:
            return row[0]
        if deleted:
            rel = "deletion"
        else:
            live = self.db.execute("SELECT live FROM objects WHERE key = ?", (key,)).fetchone()
            rel = "update" if live and live[0] else "canonical"
        self.db.execute("INSERT INTO events (event_id, rel) VALUES (?, ?)", (event_id, rel))
        return rel

    def published(self, key: str, deleted: bool, metadata_id: Optional[str] = None,
                  digest: Optional[str] = None) -> None:
        with self.lock:
            self._published(key, deleted, metadata_id, digest)

    def _published(self, key: str, deleted: bool, metadata_id: Optional[str], digest: Optional[str]) -> None:
        self.db.execute("INSERT OR REPLACE INTO objects VALUES (?, ?)", (key, 0 if deleted else 1))
        if metadata_id and not deleted:
            self.db.execute("INSERT OR REPLACE INTO metadata VALUES (?, ?)", (metadata_id, key))
            self.db.execute("INSERT OR REPLACE INTO metadata_content VALUES (?, ?)", (key, digest))
        if metadata_id and deleted:
            self.db.execute("DELETE FROM metadata WHERE id = ?", (metadata_id,))
        if deleted:
            self.db.execute("DELETE FROM metadata_content WHERE key = ?", (key,))

    def announced_content(self, key: str) -> Optional[str]:
        """The sha512 of the discovery metadata record last announced under this key."""
        with self.lock:
            row = self.db.execute("SELECT sha512 FROM metadata_content WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def forget_events(self, older_than_days: float = EVENT_MEMORY_DAYS) -> int:
        """Events older than SQS can redeliver them need no memory; returns how many went."""
        with self.lock:
            cursor = self.db.execute("DELETE FROM events WHERE seen < unixepoch() - ?", (older_than_days * 86400,))
            return cursor.rowcount

    def metadata_published(self, metadata_id: str) -> bool:
        with self.lock:
            return self.db.execute("SELECT 1 FROM metadata WHERE id = ?", (metadata_id,)).fetchone() is not None


class Agent:
    def __init__(self, config: dict, *, session=None, password: Optional[str] = None):
        import boto3

        self.config = config
        publishing = config["publishing"]
        session = session or boto3.session.Session(region_name=config["region"])
        from botocore.config import Config

        # a connection per worker (and the poller's and deleter's), a read timeout well above the 1 s long poll
        connections = Config(max_pool_connections=WORKERS + 2, connect_timeout=5, read_timeout=30,
                             retries={"mode": "standard"})
        self.s3 = session.client("s3", config=connections)
        self.sqs = session.client("sqs", config=connections)
        self.bucket = publishing["bucket"]
        self.queue_url = self.sqs.get_queue_url(QueueName=publishing["queue"])["QueueUrl"]
        self.dead_letter_url = self.sqs.get_queue_url(QueueName=publishing["dead_letter_queue"])["QueueUrl"]
        self.public_dir = Path(publishing["public_dir"])
        self.max_bytes = int(publishing["max_file_bytes"])
        self.centre_id = config["centre_id"]
        self.fqdn = config["fqdn"]
        self.state = State(Path(publishing["state_db"]))
        self.password = password or self._publisher_password(session)
        self.stopping = threading.Event()
        self._topics = _topic_validator(self.centre_id)
        self._mqtt = None
        self._broker_down = False
        self._connecting = threading.Lock()
        self._metadata_first = threading.RLock()
        self._acked: dict[int, int] = {}
        self._ack = threading.Condition()

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> None:
        """One poller receives events, workers settle them one each, a deleter batches the deletions.

        At most IN_FLIGHT events are held at once, and each leaves the queue as soon as its
        notification is acknowledged, not behind the slowest file of its batch. The poller takes
        full batches when events arrive quickly (see BATCH_WINDOW) and receives nothing while the
        broker is down, so an outage does not count against the queue's maxReceiveCount.
        """
        LOG.info("agent for %s: bucket %s, queue %s", self.centre_id, self.bucket, self.queue_url)
        slots = threading.BoundedSemaphore(IN_FLIGHT)
        deleter = _Deleter(self.sqs, self.queue_url)
        deleting = threading.Thread(target=deleter.run, name="deleter", daemon=True)
        deleting.start()
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="worker") as pool:
            self._poll(slots, pool, deleter)
        deleter.stop()  # the workers have settled what was received: the last batch goes, then the thread
        deleting.join()

    def _poll(self, slots: threading.BoundedSemaphore, pool: ThreadPoolExecutor, deleter: "_Deleter") -> None:
        while not self.stopping.is_set():
            if not self._broker_ready():
                continue
            held = _acquire_up_to(slots, 10, self.stopping)
            try:
                messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=held,
                                                    WaitTimeSeconds=1).get("Messages", []) if held else []
            except Exception:  # an AWS hiccup: log it, keep going
                LOG.exception("could not receive events; retrying")
                messages = []
                self.stopping.wait(1)
            for _ in range(held - len(messages)):
                slots.release()
            for message in messages:
                pool.submit(self._settle, message, slots, deleter)
            if 0 < len(messages) < 10:
                self.stopping.wait(BATCH_WINDOW)

    def _broker_ready(self) -> bool:
        """Connected to the broker (or just reconnected); otherwise wait a little and say so."""
        try:
            self._client()
        except BrokerUnavailable as err:
            if not self._broker_down:  # once per outage, not every two seconds
                LOG.warning("broker unavailable (%s); not taking events until it is back", err)
            self._broker_down = True
            self.stopping.wait(2)
            return False
        if self._broker_down:
            LOG.info("broker back; taking events again")
            self._broker_down = False
        return True

    def _settle(self, message: dict, slots: threading.BoundedSemaphore, deleter: "_Deleter") -> None:
        """Publish (or park) one event; only then may it leave the queue."""
        try:
            self.handle_message(message)
            deleter.add(message["ReceiptHandle"])
        except BrokerUnavailable as err:
            LOG.warning("broker unavailable (%s); the event goes back to the queue", err)
            with self._connecting:
                self._disconnect()
            self._release(message)
        except Exception:  # an AWS hiccup: log it, keep going; the event comes back after its visibility timeout
            LOG.exception("unexpected error; the event stays queued and comes back")
        finally:
            slots.release()

    def _release(self, message: dict) -> None:
        """Make an event visible again at once: it is received again as soon as the broker is back."""
        try:
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"],
                                               VisibilityTimeout=0)
        except Exception:  # it comes back after its visibility timeout instead
            LOG.exception("could not release an event; it comes back after the queue's visibility timeout")

    def handle_message(self, message: dict) -> list[Outcome]:
        body = json.loads(message["Body"])
        if body.get("Event") == "s3:TestEvent":
            return []
        outcomes = []
        for index, record in enumerate(body.get("Records", [])):
            event_id = f"{message['MessageId']}/{index}"
            try:
                outcomes.append(self.handle_record(record, event_id))
            except Rejected as err:
                self._park(record, str(err))
        return outcomes

    # -- one event -----------------------------------------------------------------------------

    def handle_record(self, record: dict, event_id: str) -> Outcome:
        if unquote_plus(record["s3"]["object"]["key"]).startswith("metadata/"):
            # one discovery metadata record at a time, and never while a worker is making sure a
            # dataset's record went out first: a record is announced once, not once per worker
            with self._metadata_first:
                return self._handle_record(record, event_id)
        return self._handle_record(record, event_id)

    def _handle_record(self, record: dict, event_id: str) -> Outcome:
        key = unquote_plus(record["s3"]["object"]["key"])
        deleted = record["eventName"].startswith("ObjectRemoved")
        is_metadata = key.startswith("metadata/")
        topic = self.topic_for(key)
        if not deleted and int(record["s3"]["object"].get("size", 0)) > self.max_bytes:
            raise Rejected(f"{key}: {record['s3']['object']['size']} bytes, over the limit of {self.max_bytes}")
        target = self.public_dir / key
        if deleted:
            if not target.exists():
                raise Rejected(f"{key}: deleted, but the node never published it")
            content, attributes, media_type = target.read_bytes(), {}, _media_type(key, None)
        else:
            content, attributes, media_type = self._fetch(key)
        digest = hashlib.sha512(content).hexdigest() if is_metadata and not deleted else None
        if is_metadata:
            metadata_id = _record_id(key, content) if not deleted else self._metadata_id_of(key)
            if digest and self.state.announced_content(key) == digest:
                # already out (its event arrived after a data file made sure of it): not twice
                LOG.info("%s: already announced as it is", key)
                return Outcome(topic=topic, rel="unchanged", data_id=f"{self.centre_id}/metadata/{metadata_id}")
        else:
            metadata_id = attributes.get("metadata-id")
        try:
            when = _time_and_place(attributes)
        except Rejected as err:
            raise Rejected(f"{key}: {err}") from None
        rel = self.state.rel_for(event_id, key, deleted)
        data_id = f"{self.centre_id}/metadata/{metadata_id}" if is_metadata else f"{self.centre_id}/{key}"
        message = build_notification(
            data_id=data_id, href=f"https://{self.fqdn}/{key}", content=content, media_type=media_type, rel=rel,
            metadata_id=None if is_metadata else metadata_id, **when)
        if attributes.get("cache", "").lower() == "false":
            message["properties"]["cache"] = False
        if attributes.get("geometry"):
            message["geometry"] = _point(key, attributes["geometry"])
        self._validate(key, message)
        if metadata_id and not is_metadata and not deleted:
            self._ensure_metadata_first(metadata_id)
        if not deleted:
            _write_atomically(target, content)
        self._publish(topic, message)
        if deleted:
            target.unlink(missing_ok=True)
        self.state.published(key, deleted, metadata_id if is_metadata else None, digest)
        LOG.info("published %s %s on %s", rel, data_id, topic)
        return Outcome(topic=topic, rel=rel, data_id=data_id)

    def topic_for(self, key: str) -> str:
        """The key convention: the topic below the centre-id, then the file name."""
        parts = key.split("/")
        if len(parts) < 2 or not parts[-1] or parts[0] not in ("data", "metadata"):
            raise Rejected(f"{key}: expected data/<topic below the centre-id>/<file> or metadata/<file>")
        if parts[0] == "metadata":
            if len(parts) != 2:
                raise Rejected(f"{key}: discovery metadata lives directly under metadata/")
            topic = f"origin/a/wis2/{self.centre_id}/metadata"
        else:
            topic = f"origin/a/wis2/{self.centre_id}/{'/'.join(parts[:-1])}"
        if not self._topics(topic):
            raise Rejected(f"{key}: {topic} is not a valid WIS2 topic (pywis-topics)")
        return topic

    # -- helpers -------------------------------------------------------------------------------

    def _fetch(self, key: str) -> tuple[bytes, dict, str]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
            content = response["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("SlowDown", "InternalError", "ServiceUnavailable"):
                raise  # transient: let the event come back
            raise Rejected(f"{key}: unreadable ({err.response.get('Error', {}).get('Code')})") from None
        except BotoCoreError as err:
            raise Rejected(f"{key}: unreadable ({err})") from None
        if len(content) > self.max_bytes:
            raise Rejected(f"{key}: {len(content)} bytes, over the limit of {self.max_bytes}")
        return content, response.get("Metadata", {}), _media_type(key, response.get("ContentType"))

    def _ensure_metadata_first(self, metadata_id: str) -> None:
        """Discovery metadata goes out before any data of its dataset (GBs need it to relay)."""
        with self._metadata_first:  # one worker looks it up and announces it; the others wait for it
            if not self.state.metadata_published(metadata_id):
                self._announce_metadata(metadata_id)

    def _announce_metadata(self, metadata_id: str) -> None:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="metadata/")
        for page in pages:
            for item in page.get("Contents", []):
                content, _, _ = self._fetch(item["Key"])
                if _record_id(item["Key"], content) == metadata_id:
                    self.handle_record({"eventName": "ObjectCreated:Put",
                                        "s3": {"object": {"key": item["Key"], "size": item["Size"]}}},
                                       event_id=f"metadata-first/{item['Key']}/{item['ETag']}")
                    return
        raise Rejected(f"metadata_id {metadata_id}: no discovery metadata record with that id under "
                       "metadata/; publish the dataset's record first")

    def _metadata_id_of(self, key: str) -> Optional[str]:
        with self.state.lock:
            row = self.state.db.execute("SELECT id FROM metadata WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _validate(self, key: str, message: dict) -> None:
        try:  # pywis-pubsub 0.13 (Python 3.12+, the VM's) moved the suite under wnm/
            from pywis_pubsub.wnm.ets import WNMTestSuite
        except ModuleNotFoundError:  # 0.12, the last release for Python 3.11
            from pywis_pubsub.ets import WNMTestSuite

        try:
            report = WNMTestSuite(message).run_tests(fail_on_schema_validation=True)["ets-report"]
        except ValueError as err:
            raise Rejected(f"{key}: notification fails the WNM schema: {err}") from None
        failed = [test["id"] for test in report["tests"] if test["code"] == "FAILED"]
        if failed:
            raise Rejected(f"{key}: notification fails {', '.join(failed)}")
        if len(json.dumps(message)) > 8192:
            raise Rejected(f"{key}: notification over 8192 bytes")

    def _publish(self, topic: str, message: dict) -> None:
        import paho.mqtt.client as mqtt

        client = self._client()
        info = client.publish(topic, json.dumps(message), qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise BrokerUnavailable(mqtt.error_string(info.rc))
        with self._ack:
            if not self._ack.wait_for(lambda: info.mid in self._acked, timeout=10):
                raise BrokerUnavailable("no acknowledgement within 10 s")
            reason = self._acked.pop(info.mid)
        if reason >= 0x80:
            raise Rejected(f"{topic}: the broker refused the publication (reason code {reason})")

    def _client(self):
        with self._connecting:  # one connection, shared by the workers
            return self._connect()

    def _connect(self):
        import paho.mqtt.client as mqtt

        if self._mqtt is not None and self._mqtt.is_connected():
            return self._mqtt
        self._disconnect()
        broker = self.config["broker"]
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"wis2-agent-{os.getpid()}",
                             protocol=mqtt.MQTTv5)
        client.username_pw_set(broker["publisher_user"], self.password)
        client.max_inflight_messages_set(100)

        def on_publish(client, userdata, mid, reason_code, properties):
            with self._ack:
                self._acked[mid] = reason_code.value
                self._ack.notify_all()

        connected = threading.Event()
        client.on_publish = on_publish
        client.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure else None
        try:
            client.connect("127.0.0.1", int(broker["local_port"]), keepalive=30)
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

    def _park(self, record: dict, reason: str) -> None:
        LOG.error("not published, parked in the dead-letter queue: %s", reason)
        if len(reason) > 1000:  # keys run to 1024 characters: keep the start and the verdict
            reason = f"{reason[:300]} ... {reason[-600:]}"
        self.sqs.send_message(QueueUrl=self.dead_letter_url, MessageBody=json.dumps({"Records": [record]}),
                              MessageAttributes={"reason": {"DataType": "String", "StringValue": reason}})

    def _publisher_password(self, session) -> str:
        """Read once at start: the SSM client (and its service model) is not kept around."""
        name = self.config["broker"]["password_parameter"]
        ssm = session.client("ssm")
        try:
            return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        finally:
            ssm.close()
            del ssm
            gc.collect()

    def close(self) -> None:
        self.stopping.set()
        with self._connecting:
            self._disconnect()


class _Deleter:
    """Deletes settled events ten a request, or what has settled within `linger` seconds of the first.

    Each request costs SQS (and moto far more) about as much as a receive: a burst is deleted in
    full batches, and an event leaves the queue at most `linger` seconds after its notification.
    """

    def __init__(self, sqs, queue_url: str, linger: float = 0.05):
        self.sqs, self.queue_url, self.linger = sqs, queue_url, linger
        self.pending: list[str] = []
        self.ready = threading.Condition()
        self.finished = False

    def add(self, receipt_handle: str) -> None:
        with self.ready:
            self.pending.append(receipt_handle)
            self.ready.notify()

    def stop(self) -> None:
        with self.ready:
            self.finished = True
            self.ready.notify()

    def run(self) -> None:
        while True:
            with self.ready:
                self.ready.wait_for(lambda: self.pending or self.finished)
                if not self.pending and self.finished:
                    return
                if len(self.pending) < 10 and not self.finished:  # let a few more settle alongside
                    self.ready.wait_for(lambda: len(self.pending) >= 10 or self.finished, timeout=self.linger)
                batch, self.pending = self.pending[:10], self.pending[10:]
            try:
                failed = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                    {"Id": str(index), "ReceiptHandle": handle} for index, handle in enumerate(batch)]).get("Failed")
                if failed:
                    LOG.warning("%d events not deleted (they come back and are announced again): %s",
                                len(failed), failed)
            except Exception:  # they come back, and are announced again with the same data_id
                LOG.exception("could not delete %d settled events; they will be announced again", len(batch))


def _acquire_up_to(slots: threading.BoundedSemaphore, most: int, stopping: threading.Event) -> int:
    """Wait for one free slot (0 if the agent stops first), then take what else is free, up to `most`."""
    while not slots.acquire(timeout=0.5):
        if stopping.is_set():
            return 0
    held = 1
    while held < most and slots.acquire(blocking=False):
        held += 1
    return held


def _topic_validator(centre_id: str):
    """pywis-topics' check; strict about the centre-id only once WMO has registered it."""
    from pywis_topics.topics import TopicHierarchy

    hierarchy = TopicHierarchy()
    strict = centre_id.endswith("-test") or centre_id in hierarchy.topics[3]
    if not strict:
        LOG.warning("%s is not in WMO's registered centre-ids yet: topics are checked without it", centre_id)
    return lambda topic: hierarchy.validate(topic, strict=strict, publication=True)


def _record_id(key: str, content: bytes) -> str:
    try:
        return json.loads(content)["id"]
    except (ValueError, KeyError, TypeError):
        raise Rejected(f"{key}: not a WCMP2 record (JSON with an id)") from None


def _media_type(key: str, declared: Optional[str]) -> str:
    if key.startswith("metadata/"):
        return METADATA_TYPE
    if declared and declared not in ("binary/octet-stream", "application/octet-stream"):
        return declared
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


def _time_and_place(attributes: dict) -> dict:
    """Observation time from the object's metadata: datetime, or start-datetime/end-datetime."""
    def parse(name: str) -> Optional[datetime.datetime]:
        value = attributes.get(name)
        if not value:
            return None
        try:
            moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Rejected(f"object metadata {name}={value!r}: expected an RFC 3339 time") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=datetime.timezone.utc)

    start, end = parse("start-datetime"), parse("end-datetime")
    if start or end:
        if not (start and end):
            raise Rejected("object metadata: start-datetime and end-datetime go together")
        return {"period": (start, end)}
    return {"observed": parse("datetime")}


def _point(key: str, value: str) -> dict:
    try:
        coordinates = [float(part) for part in value.split(",")]
    except ValueError:
        coordinates = []
    if len(coordinates) not in (2, 3) or not (-180 <= coordinates[0] <= 180 and -90 <= coordinates[1] <= 90):
        raise Rejected(f"{key}: object metadata geometry={value!r}: expected 'longitude,latitude[,height]'")
    return {"type": "Point", "coordinates": coordinates}


def _write_atomically(target: Path, content: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.write_bytes(content)
    os.chmod(partial, 0o644)
    partial.replace(target)


def main(config_path: str = "/etc/wis2/node.json") -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    with open(config_path) as handle:
        config = json.load(handle)
    agent = Agent(config)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    try:
        agent.run()
    except KeyboardInterrupt:
        pass
    finally:
        agent.close()
    return 0
