"""The node agent: bucket events in, files on the data volume and WIS2 notifications out.

For each S3 event (through SQS) the agent copies the object under the node's public directory,
builds the WIS2 Notification Message, checks the event, the key and the object's metadata with
the node's rules (wis2node.node.rules), then the topic (pywis-topics) and the message (pywis-pubsub's
test suite), publishes it at QoS 1 as the publisher account and deletes the event only once the
broker has acknowledged it. Events it cannot publish go to the dead-letter queue with the
reason; a broker that is down or an agent that is killed loses nothing, since the event stays
in the queue until it is acknowledged (at least once; a repeat carries the same data_id).

    python -m wis2node.node agent [/etc/wis2/node.json]
"""

from __future__ import annotations

import datetime
import gc
import hashlib
import json
import logging
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from wis2node.node import aws, rules
from wis2node.node.datasets import BucketDatasets, Dataset
from wis2node.node.deleter import Deleter, acquire_up_to
from wis2node.node.nodeconfig import CONFIG_PATH, ConfigError, NodeConfig
from wis2node.node.notification import build_notification, parse_rfc3339
from wis2node.node.publisher import BrokerUnavailable, Publisher
from wis2node.node.rules import Event, Rejected
from wis2node.node.state import Announced, State
from wis2node.node.wmo_checks import topic_validator, validate_notification

LOG = logging.getLogger("wis2node.node.agent")
# Workers spend most of their time waiting for S3 and for the broker's acknowledgement; by
# Little's law, 100 files/s at 300 ms each needs 30 in progress. IN_FLIGHT bounds what the agent
# holds (received, not yet deleted), so a backlog stays in the queue rather than in memory.
WORKERS = 32
IN_FLIGHT = 64
# After a partial batch the poller waits this long before receiving again, so that a burst is
# taken ten events a request rather than one or two: fewer requests for SQS (and for moto, whose
# ReceiveMessage costs grow with the queue's depth), at the price of 50 ms of latency at most.
BATCH_WINDOW = 0.05
# Files are written here, beside the agent's state, then renamed into the public folder: never
# half-written where nginx serves them. Same filesystem as the public folder, so the rename is atomic.
INCOMING = "incoming"


class Agent:
    """Takes the node's bucket events from its queue and publishes them; see the module's docstring."""

    def __init__(self, config: NodeConfig, *, session: aws.Session | None = None, password: str | None = None):
        from botocore.config import Config

        self.config = config
        publishing = config.publishing
        if publishing.max_file_bytes is None:  # a runtime key: load_config fills it in when the agent needs it
            raise ConfigError("publishing.max_file_bytes: not set (the runtime configuration was never applied)")
        # First, so that the memory its short-lived session used is free for the clients kept
        password = password or _publisher_password(config)
        session = session or aws.Session(config.region, ("s3", "sqs"))
        # a connection per worker (and the poller's and deleter's), a read timeout well above the 1 s long poll
        connections = Config(
            max_pool_connections=WORKERS + 2, connect_timeout=5, read_timeout=30, retries={"mode": "standard"}
        )
        self.s3 = session.client("s3", config=connections)
        self.sqs = session.client("sqs", config=connections)
        self.bucket = publishing.bucket
        self.queue_url = self.sqs.get_queue_url(QueueName=publishing.queue)["QueueUrl"]
        self.dead_letter_url = self.sqs.get_queue_url(QueueName=publishing.dead_letter_queue)["QueueUrl"]
        self.public_dir = Path(publishing.public_dir).resolve()
        self.max_bytes = publishing.max_file_bytes
        self.centre_id = config.centre_id
        self.fqdn = config.fqdn
        state_db = Path(publishing.state_db)
        self.state = State(state_db)
        self.incoming = _incoming_dir(state_db.parent / INCOMING, self.public_dir)
        broker = config.broker
        self.publisher = Publisher(
            "127.0.0.1",
            broker.local_port,
            broker.publisher_user,
            password,
        )
        self.stopping = threading.Event()
        self._topics = topic_validator(self.centre_id)
        self._broker_down = False
        self._metadata_first = threading.RLock()
        self._key_locks = [threading.Lock() for _ in range(64)]
        self.datasets = BucketDatasets(self.s3, self.bucket, lambda key: self._fetch(key)[0])

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
        deleter = Deleter(self.sqs, self.queue_url)
        deleting = threading.Thread(target=deleter.run, name="deleter", daemon=True)
        deleting.start()
        with ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="worker") as pool:
            self._poll(slots, pool, deleter)
        deleter.stop()  # the workers have settled what was received: the last batch goes, then the thread
        deleting.join()

    def _poll(self, slots: threading.BoundedSemaphore, pool: ThreadPoolExecutor, deleter: Deleter) -> None:
        while not self.stopping.is_set():
            if not self._broker_ready():
                continue
            held = acquire_up_to(slots, 10, self.stopping)
            try:
                messages = (
                    self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=held, WaitTimeSeconds=1).get(
                        "Messages", []
                    )
                    if held
                    else []
                )
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
            self.publisher.connect()
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

    def _settle(self, message: dict, slots: threading.BoundedSemaphore, deleter: Deleter) -> None:
        """Publish (or park) one event; only then may it leave the queue."""
        try:
            self.handle_message(message)
            deleter.add(message["ReceiptHandle"])
        except BrokerUnavailable as err:
            LOG.warning("broker unavailable (%s); the event goes back to the queue", err)
            self.publisher.reset()
            self._release(message)
        except Exception:  # an AWS hiccup: log it, keep going; the event comes back after its visibility timeout
            LOG.exception("unexpected error; the event stays queued and comes back")
        finally:
            slots.release()

    def _release(self, message: dict) -> None:
        """Make an event visible again at once: it is received again as soon as the broker is back."""
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        except Exception:  # it comes back after its visibility timeout instead
            LOG.exception("could not release an event; it comes back after the queue's visibility timeout")

    def handle_message(self, message: dict) -> None:
        """Publish each record of a queue message, or park it with its reason; anything not S3's is refused."""
        try:
            body = json.loads(message["Body"])
        except ValueError:
            body = None
        if isinstance(body, dict) and body.get("Event") == "s3:TestEvent":
            return
        if not isinstance(body, dict) or not isinstance(body.get("Records"), list):
            self._park(message["Body"], "not an S3 event notification (JSON with a list of Records)")
            return
        for index, record in enumerate(body["Records"]):
            try:
                self.handle_event(rules.accept_record(record, self.bucket), f"{message['MessageId']}/{index}")
            except Rejected as err:
                self._park(json.dumps({"Records": [record]}), str(err))
            except (ValueError, TypeError, KeyError, OverflowError) as err:  # a value no rule foresaw: never retried
                LOG.exception("an event no rule refused failed")
                self._park(json.dumps({"Records": [record]}), f"refused, unexpectedly: {type(err).__name__}: {err}")

    # -- one event -----------------------------------------------------------------------------

    def handle_event(self, event: Event, event_id: str) -> None:
        """Publish one accepted event (Rejected names its key, the value and what is expected)."""
        try:
            if event.is_metadata:
                # one discovery metadata record at a time, and never while a worker is making sure a
                # dataset's record went out first: a record is announced once, not once per worker
                with self._metadata_first:
                    self._handle_event(event, event_id)
            else:
                self._handle_event(event, event_id)
        except Rejected as err:
            raise Rejected(f"{event.key}: {err}") from None

    def _handle_event(self, event: Event, event_id: str) -> None:
        key, deleted = event.key, event.deleted
        topic = rules.topic_for(key, self.centre_id)
        if not self._topics(topic):
            raise Rejected(f"{topic} is not a valid WIS2 topic (pywis-topics)")
        target = rules.public_path(self.public_dir, key)
        if event.is_metadata:
            self.datasets.stale = True  # a record came or went: the next data file sees the topics anew
            self._announce(event, event_id, topic, target, None)  # under _metadata_first (handle_event)
            return
        with self._key_locks[hash(key) % len(self._key_locks)]:  # one event of a key at a time: rel, pubtime
            before = self.state.announced(key)
            if deleted:
                dataset = None if before.metadata_id else self._dataset_or_none(topic)
            else:
                dataset = self.datasets.for_topic(topic)
            self._announce(event, event_id, topic, target, dataset)

    def _dataset_or_none(self, topic: str) -> Dataset | None:
        """A deletion of a file announced before the node kept its dataset: its topic's, if still declared."""
        try:
            return self.datasets.for_topic(topic)
        except Rejected:
            return None

    def _announce(self, event: Event, event_id: str, topic: str, target: Path, dataset: Dataset | None) -> None:
        key, deleted = event.key, event.deleted
        before = self.state.announced(key)
        attributes: dict[str, str]
        if deleted:
            content, attributes = self._published_file(key, target), {}
        else:
            if event.size > self.max_bytes:
                raise Rejected(f"{event.size} bytes, over the limit of {self.max_bytes}")
            content, attributes = self._fetch(key)
        digest = hashlib.sha512(content).hexdigest()
        if event.is_metadata:
            metadata_id = rules.record_id(content) if not deleted else self.state.metadata_id_of(key)
            if not deleted and self.state.announced_content(key) == digest:
                # already out (its event arrived after a data file made sure of it): not twice
                LOG.info("%s: already announced as it is", key)
                return
            legacy = f"{self.centre_id}/metadata/{metadata_id}"
            # WNM 1.4 (draft): data_id starts with the metadata identifier; the record's is the identifier
            data_id = self._data_id(key, before, metadata_id, fresh=metadata_id or legacy, legacy=legacy)
            gts = None
        else:
            given = rules.metadata_id(attributes)
            metadata_id = (
                before.metadata_id if deleted and before.metadata_id else (dataset.metadata_id if dataset else None)
            )
            if given and given != metadata_id:
                raise Rejected(
                    f"object metadata metadata-id={given!r}, but its topic {topic} is the dataset "
                    f"{metadata_id} ({dataset.key if dataset else 'as announced'}): leave metadata-id out, "
                    "or give that one"
                )
            data_id = self._data_id(
                key, before, metadata_id, fresh=f"{metadata_id}/{key}", legacy=f"{self.centre_id}/{key}"
            )
            gts = dataset.gts_for(key.rsplit("/", 1)[1]) if dataset and not deleted else None
        when = rules.observation_time(attributes)
        cache = rules.cache_flag(attributes)
        geometry = rules.point(attributes["geometry"]) if attributes.get("geometry") else None
        rel = self.state.rel_for(event_id, key, deleted)
        # an update of data is served under its own version path too: the link names that version
        href_key = rules.version_key(key, digest) if rel == "update" and not event.is_metadata else key
        version = rules.public_path(self.public_dir, href_key) if href_key != key else None
        pubtime = self._pubtime(before.pubtime)
        message = build_notification(
            data_id=data_id,
            href=f"https://{self.fqdn}/{href_key}",
            content=content,
            media_type=rules.media_type(key),
            rel=rel,
            metadata_id=metadata_id,
            pubtime=pubtime,
            gts=gts,
            **when,
        )
        if cache is not None:
            message["properties"]["cache"] = cache
        if geometry:
            message["geometry"] = geometry
        payload = validate_notification(message)
        if dataset and not deleted:
            self._ensure_metadata_first(dataset)
        if not deleted:
            if version:
                self._write(version, content)  # first: a notification never names a file not there yet
            self._write(target, content)
        self.publisher.publish(topic, payload)
        if deleted:
            target.unlink(missing_ok=True)
            self._remove_versions(key)
        self.state.published(
            key,
            deleted,
            metadata_id if event.is_metadata else None,
            digest if event.is_metadata and not deleted else None,
            announced=Announced(metadata_id, data_id, message["properties"]["pubtime"]),
        )
        LOG.info("published %s %s on %s", rel, data_id, topic)

    def _data_id(self, key: str, before: Announced, metadata_id: str | None, *, fresh: str, legacy: str) -> str:
        """The same data_id for every notification of a key: as first announced, unless its dataset changed."""
        if before.data_id and before.metadata_id == metadata_id:
            return before.data_id
        if before.data_id is None and self.state.is_live(key):  # announced before the node kept data_ids
            return legacy
        return fresh if metadata_id else legacy

    @staticmethod
    def _pubtime(previous: str | None) -> datetime.datetime:
        """Now, or a microsecond after the key's last pubtime if the clock says otherwise: always newer."""
        now = datetime.datetime.now(datetime.UTC)
        if previous:
            last = parse_rfc3339(previous)
            if now <= last:
                now = last + datetime.timedelta(microseconds=1)
        return now

    def _remove_versions(self, key: str) -> None:
        """A deleted key's earlier versions go with it."""
        folder, name = key.rsplit("/", 1)
        versions = rules.public_path(self.public_dir, folder) / rules.VERSIONS
        for copy in versions.glob(f"*/{name}"):
            copy.unlink(missing_ok=True)
            try:
                copy.parent.rmdir()
            except OSError:  # other files' versions with the same digest folder
                pass

    # -- files ---------------------------------------------------------------------------------

    def _published_file(self, key: str, target: Path) -> bytes:
        """A deleted object's file, only if the agent published it: nothing else is ever removed."""
        if not self.state.is_live(key):
            raise Rejected("deleted, but the node never published it (or announced its deletion already)")
        try:
            return target.read_bytes()
        except FileNotFoundError:
            raise Rejected("deleted, but its file is gone from the node already (retention)") from None

    def _write(self, target: Path, content: bytes) -> None:
        """Write beside the state, then rename into place: readers see the old file or the new one."""
        try:
            if not target.parent.is_dir():  # most files go to a folder that is there already
                target.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise Rejected("one of its folders is a published file") from None
        if target.is_dir():
            raise Rejected("a folder of published files has this name")
        handle, partial = tempfile.mkstemp(dir=self.incoming, suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as stream:
                stream.write(content)
                os.fchmod(handle, 0o644)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise

    def _fetch(self, key: str) -> tuple[bytes, dict]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=key)
            content = response["Body"].read()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("SlowDown", "InternalError", "ServiceUnavailable"):
                raise  # transient: let the event come back
            raise Rejected(f"unreadable ({err.response.get('Error', {}).get('Code')})") from None
        except BotoCoreError as err:
            raise Rejected(f"unreadable ({err})") from None
        if len(content) > self.max_bytes:
            raise Rejected(f"{len(content)} bytes, over the limit of {self.max_bytes}")
        return content, response.get("Metadata", {})

    # -- discovery metadata first --------------------------------------------------------------

    def _ensure_metadata_first(self, dataset: Dataset) -> None:
        """Discovery metadata goes out before any data of its dataset (GBs need it to relay)."""
        with self._metadata_first:  # one worker announces it; the others wait for it
            if self.state.metadata_published(dataset.metadata_id):
                return
            self.handle_event(
                Event(key=dataset.key, deleted=False), event_id=f"metadata-first/{dataset.key}/{dataset.etag}"
            )
            if not self.state.metadata_published(dataset.metadata_id):
                raise Rejected(
                    f"metadata_id {dataset.metadata_id}: its record {dataset.key} was not announced "
                    "(it changed since it was read); the event comes back"
                )

    # -- the rest ------------------------------------------------------------------------------

    def _park(self, body: str, reason: str) -> None:
        LOG.error("not published, parked in the dead-letter queue: %s", reason)
        if len(reason) > 1000:  # keys run to 1024 characters: keep the start and the verdict
            reason = f"{reason[:300]} ... {reason[-600:]}"
        self.sqs.send_message(
            QueueUrl=self.dead_letter_url,
            MessageBody=body,
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason}},
        )

    def close(self) -> None:
        """Stop taking events and leave the broker."""
        self.stopping.set()
        self.publisher.reset()


def _incoming_dir(incoming: Path, public_dir: Path) -> Path:
    """The agent's folder of files being written: emptied at start, outside the public tree, same filesystem."""
    incoming.mkdir(parents=True, exist_ok=True)
    public_dir.mkdir(parents=True, exist_ok=True)
    if incoming.resolve().is_relative_to(public_dir):
        raise SystemExit(
            f"agent: {incoming} is inside the public folder {public_dir}; nginx would serve "
            "half-written files: keep the agent's state outside it"
        )
    for folder in (public_dir / "data", public_dir / "metadata"):
        folder.mkdir(exist_ok=True)
        if _mount_of(incoming) != _mount_of(folder):
            raise SystemExit(
                f"agent: {incoming} and {folder} are on different mounts (filesystems, or bind mounts "
                "such as systemd's ReadWritePaths= makes for each path it lists): files could not be "
                "renamed into place; make them writable through one mount"
            )
    for leftover in incoming.iterdir():  # a killed agent's half-written files: their events come back
        leftover.unlink()
    return incoming


def _mount_of(path: Path) -> tuple:
    """The mount a path is on: a rename works only within one, even between bind mounts of a filesystem."""
    resolved, best = str(path.resolve()), ("", 0)
    try:
        with open("/proc/self/mountinfo") as mounts:
            for line in mounts:
                fields = line.split()
                point = fields[4].encode().decode("unicode_escape")  # spaces and the like come as \\040
                inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best[0]):
                    best = (point, int(fields[0]))
    except OSError:  # no /proc: the device number is all there is to compare
        return ("", path.stat().st_dev)
    return best


def _publisher_password(config: NodeConfig) -> str:
    """Read once at start, through a session of its own: nothing of SSM's stays in the agent's memory."""
    ssm = aws.Session(config.region, ("ssm",)).client("ssm")
    try:
        return ssm.get_parameter(Name=config.broker.password_parameter, WithDecryption=True)["Parameter"]["Value"]
    finally:
        ssm.close()
        del ssm
        gc.collect()


def main(config_path: str = CONFIG_PATH) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from wis2node.node.nodeconfig import load_config

    agent = Agent(load_config(config_path, (("publishing", "max_file_bytes"),)))
    # What start made (modules, botocore's models and clients, the validators) lives as long as
    # the process: out of the collector's sight, so its full collections stop walking it again
    gc.collect()
    gc.freeze()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: agent.stopping.set())
    try:
        agent.run()
    except KeyboardInterrupt:
        pass
    finally:
        agent.close()
    return 0
