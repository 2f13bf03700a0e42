"""Which dataset a data file belongs to: the topic its key gives, declared by one WCMP2 record.

Global Brokers load the `<metadata_id>,<topic>` pairs of a centre's records from the Global
Discovery Catalogue and flag data on any other topic ("Missing Metadata record"). So the node
takes a file's dataset from its topic: the `channel` (formerly `wmo:topic`) of the MQTT links
of the stack's records. A topic no record declares is refused; two records declaring one topic
are refused at preview and by `check` (load_records), and by the agent should the bucket ever
hold them.

A dataset may also map file names to GTS headers (`properties.gts`, for centres that switch off
their message switch): `gts_headers_mapping.csv` in the dataset's folder (beside its record, a
folder named as the record without `.json`), with wis2box's columns
`string_in_filepath,TTAAii,CCCC`; the first row whose string is in the file's name applies.

Runs on the VM (the agent) and in the repository (check, preview): standard library only.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field

GTS_MAPPING = "gts_headers_mapping.csv"
GTS_COLUMNS = ("string_in_filepath", "TTAAii", "CCCC")
_TTAAII = re.compile(r"[A-Z]{4}[0-9]{2}")
_CCCC = re.compile(r"[A-Z]{4}")
_FILE_PART = re.compile(r"[A-Za-z0-9._-]+")  # what a published file name may hold (wis2node.node.rules.FILE_NAME)
GTS_ROWS_MAX = 10_000


class DatasetError(ValueError):
    """A record or a GTS mapping the node cannot use; the message names the value and what is expected."""


def record_topics(record: dict) -> list[str]:
    """The topics a record declares: the channel (or wmo:topic) of each MQTT link, origin/ topics only.

    Global Brokers republish under cache/ what they take from origin/: a node publishes only on origin/.
    """
    topics = []
    for link in record.get("links") or []:
        if not isinstance(link, dict) or not str(link.get("href", "")).lower().startswith(("mqtt://", "mqtts://")):
            continue
        topic = link.get("channel", link.get("wmo:topic"))
        if isinstance(topic, str) and topic.startswith("origin/") and topic not in topics:
            topics.append(topic)
    return topics


def claims(records: dict[str, dict]) -> dict[str, list[str]]:
    """Each topic and the records (by name) declaring it, in the names' order."""
    found: dict[str, list[str]] = {}
    for name, record in records.items():
        for topic in record_topics(record):
            found.setdefault(topic, []).append(name)
    return found


def conflicts(records: dict[str, dict]) -> list[str]:
    """One line per topic declared by more than one record, naming them all."""
    return [
        f"topic {topic} is declared by {' and '.join(names)}: a Global Broker could not tell which dataset "
        "its data belongs to; expected one record per topic"
        for topic, names in sorted(claims(records).items())
        if len(names) > 1
    ]


@dataclass(frozen=True)
class GtsHeader:
    string_in_filepath: str
    ttaaii: str
    cccc: str


def parse_gts_mapping(content: bytes, name: str = GTS_MAPPING) -> list[GtsHeader]:
    """wis2box's mapping: header string_in_filepath,TTAAii,CCCC; every row checked, errors name the line."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DatasetError(f"{name}: not UTF-8 text") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or tuple(cell.strip() for cell in rows[0]) != GTS_COLUMNS:
        raise DatasetError(
            f"{name}: line 1 is {rows[0] if rows else 'missing'}: expected the header {','.join(GTS_COLUMNS)}"
        )
    if len(rows) - 1 > GTS_ROWS_MAX:
        raise DatasetError(f"{name}: {len(rows) - 1} rows, over {GTS_ROWS_MAX}")
    headers = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != 3:
            raise DatasetError(f"{name}: line {number} has {len(row)} columns: expected 3 ({','.join(GTS_COLUMNS)})")
        part, ttaaii, cccc = (cell.strip() for cell in row)
        if not _FILE_PART.fullmatch(part):
            raise DatasetError(
                f"{name}: line {number}: string_in_filepath={part!r}: expected part of a file name "
                "(letters, digits, '.', '_', '-')"
            )
        if not _TTAAII.fullmatch(ttaaii):
            raise DatasetError(
                f"{name}: line {number}: TTAAii={ttaaii!r}: expected four capital letters and two digits (e.g. SMAQ01)"
            )
        if not _CCCC.fullmatch(cccc):
            raise DatasetError(f"{name}: line {number}: CCCC={cccc!r}: expected four capital letters (e.g. EXMP)")
        headers.append(GtsHeader(part, ttaaii, cccc))
    return headers


def gts_for(headers: list[GtsHeader], file_name: str) -> dict | None:
    """properties.gts for a file, from the first row whose string is in its name; None if no row matches."""
    for header in headers:
        if header.string_in_filepath in file_name:
            return {"ttaaii": header.ttaaii, "cccc": header.cccc}
    return None


@dataclass(frozen=True)
class Dataset:
    """A dataset as the agent knows it: its record's id and object key, its topics and GTS headers."""

    metadata_id: str
    key: str
    topics: tuple[str, ...]
    gts: tuple[GtsHeader, ...] = field(default=())
    etag: str = ""

    def gts_for(self, file_name: str) -> dict | None:
        return gts_for(list(self.gts), file_name)


def gts_key(record_key: str) -> str:
    """Where Pulumi puts a dataset's GTS mapping in the ingest bucket: outside data/ and metadata/, so
    no event is sent for it, and only the node reads it (uploaders may write under data/ alone)."""
    stem = record_key.split("/", 1)[1].rsplit(".", 1)[0]
    return f"datasets/{stem}/{GTS_MAPPING}"


class BucketDatasets:
    """The agent's view of the stack's datasets: the records under metadata/ of the ingest bucket.

    Loaded at the first look-up and again whenever a topic is unknown (a record uploaded moments
    before its data), a record's event has arrived (`stale`), or MAX_AGE has passed (a GTS mapping
    changed alone sends no event); each reload lists metadata/ and datasets/ and reads only the
    objects whose ETag changed.
    """

    MAX_AGE = 300.0

    def __init__(self, s3, bucket: str, fetch):
        import threading
        import time

        self._clock = time.monotonic
        self.loaded_at = 0.0

        self.s3, self.bucket, self.fetch = s3, bucket, fetch  # fetch(key) -> bytes, raises Rejected
        self.lock = threading.Lock()
        self.generation = 0
        self.stale = True
        self._objects: dict[str, tuple[str, object]] = {}  # key -> (etag, parsed record, GTS rows or error)
        self._by_topic: dict[str, list[Dataset]] = {}
        self._problems: dict[str, str] = {}  # record key -> why its GTS mapping is unusable

    def for_topic(self, topic: str) -> Dataset:
        from wis2node.node.rules import Rejected

        seen = self.generation
        if self.stale or topic not in self._by_topic or self._clock() - self.loaded_at > self.MAX_AGE:
            with self.lock:
                if self.generation == seen:  # nobody reloaded while this worker waited
                    self._reload()
        found = self._by_topic.get(topic, [])
        if not found:
            raise Rejected(
                f"topic {topic}: no discovery metadata record of the node declares it (a link with "
                "this channel); expected the topic of one of the stack's datasets "
                "(stacks/<stack>/metadata/*.json)"
            )
        if len(found) > 1:
            raise Rejected(
                f"topic {topic} is declared by {' and '.join(d.key for d in found)}: expected one record per topic"
            )
        dataset = found[0]
        if dataset.key in self._problems:
            raise Rejected(self._problems[dataset.key])
        return dataset

    def _reload(self) -> None:
        listed: dict[str, str] = {}
        for prefix in ("metadata/", "datasets/"):
            for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                listed.update({item["Key"]: item["ETag"] for item in page.get("Contents", [])})
        objects = {}
        for key, etag in listed.items():
            known = self._objects.get(key)
            objects[key] = known if known and known[0] == etag else (etag, self._read(key))
        self._objects = objects
        by_topic: dict[str, list[Dataset]] = {}
        problems = {}
        for key, (_, record) in objects.items():
            if not key.startswith("metadata/") or not isinstance(record, dict):
                continue
            gts: tuple = ()
            mapping = objects.get(gts_key(key), (None, None))[1]
            if isinstance(mapping, DatasetError):
                problems[key] = f"the GTS mapping of {key} ({gts_key(key)}) is unusable: {mapping}"
            elif isinstance(mapping, list):
                gts = tuple(mapping)
            dataset = Dataset(
                metadata_id=str(record.get("id")),
                key=key,
                topics=tuple(record_topics(record)),
                gts=gts,
                etag=objects[key][0],
            )
            for topic in dataset.topics:
                by_topic.setdefault(topic, []).append(dataset)
        self._by_topic, self._problems = by_topic, problems
        self.generation += 1
        self.stale = False
        self.loaded_at = self._clock()

    def _read(self, key: str) -> object:
        """A record (dict), a GTS mapping (its rows or the DatasetError), or None for anything else."""
        import json

        from wis2node.node.rules import Rejected

        try:
            content = self.fetch(key)
        except Rejected:
            return None
        if key.startswith("datasets/"):
            try:
                return parse_gts_mapping(content, key) if key.endswith(f"/{GTS_MAPPING}") else None
            except DatasetError as err:
                return err
        try:
            record = json.loads(content)
        except ValueError:
            return None  # not a record: its own event parks it with the reason
        return record if isinstance(record, dict) and isinstance(record.get("id"), str) else None
