"""The dead-letter queue, for operators: what the node refused and why, and sending it back.

The agent parks an event it can never publish as it is (bad key, missing metadata, too large...)
in the dead-letter queue with a `reason`. After the fix (the dataset's record published, the file
uploaded again, a setting changed), `redrive` makes S3 announce the object again: it copies the
object onto itself, so the new event comes from S3 itself, the only sender the ingest queue
accepts. An event whose object is gone cannot be replayed; `--drop` removes it.

    python -m wis2node dead-letters list --stack S
    python -m wis2node dead-letters redrive --stack S (--all | MESSAGE_ID ...) [--drop]
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import unquote_plus

# Long enough to list (and act on) a few thousand messages before they show again.
LISTING_VISIBILITY_SECONDS = 120


@dataclass(frozen=True)
class Parked:
    """One event in the dead-letter queue, as the agent parked it."""

    message_id: str
    receipt_handle: str
    event: str  # e.g. ObjectCreated:Put; "" if the message is not an S3 event
    key: str
    reason: str
    parked_at: str  # ISO time the agent parked it

    @property
    def replayable(self) -> bool:
        return self.event.startswith("ObjectCreated")

    def as_dict(self) -> dict:
        return {
            "id": self.message_id,
            "event": self.event,
            "key": self.key,
            "reason": self.reason,
            "parked_at": self.parked_at,
        }


def _parse(message: dict) -> Parked:
    try:
        record = json.loads(message["Body"])["Records"][0]
        event, key = str(record["eventName"]), unquote_plus(str(record["s3"]["object"]["key"]))
    except (ValueError, KeyError, IndexError, TypeError):
        event, key = "", ""
    reason = message.get("MessageAttributes", {}).get("reason", {}).get("StringValue", "(no reason given)")
    sent = int(message.get("Attributes", {}).get("SentTimestamp", "0")) / 1000
    parked_at = datetime.datetime.fromtimestamp(sent, datetime.UTC).isoformat(timespec="seconds")
    return Parked(
        message_id=message["MessageId"],
        receipt_handle=message["ReceiptHandle"],
        event=event,
        key=key,
        reason=reason,
        parked_at=parked_at,
    )


def take(sqs, queue_url: str) -> list[Parked]:
    """Every parked event, each once (they stay hidden for LISTING_VISIBILITY_SECONDS)."""
    found: dict[str, Parked] = {}
    empty = 0
    while empty < 2:  # SQS samples its servers: an empty answer is not proof the queue is empty
        messages = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=LISTING_VISIBILITY_SECONDS,
            MessageAttributeNames=["All"],
            AttributeNames=["SentTimestamp"],
        ).get("Messages", [])
        empty = 0 if messages else empty + 1
        for message in messages:
            found.setdefault(message["MessageId"], _parse(message))
    return sorted(found.values(), key=lambda parked: (parked.parked_at, parked.key))


def release(sqs, queue_url: str, parked: Iterable[Parked]) -> None:
    """Make listed events visible again at once (listing changes nothing)."""
    for item in parked:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=item.receipt_handle, VisibilityTimeout=0)


def replay(s3, bucket: str, parked: Parked) -> str | None:
    """Have S3 announce the object again; returns why not, or None when done."""
    if not parked.replayable:
        return f"{parked.event or 'not an S3 event'}: nothing to replay (use --drop to remove it)"
    try:
        head = s3.head_object(Bucket=bucket, Key=parked.key)
    except s3.exceptions.ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code in ("404", "NoSuchKey", "NotFound"):
            return "the object is no longer in the bucket: upload it again (use --drop to remove this event)"
        raise
    # Copying an object onto itself is allowed when its metadata is replaced: same metadata,
    # same type, and S3 sends a new ObjectCreated:Copy event.
    s3.copy_object(
        Bucket=bucket,
        Key=parked.key,
        CopySource={"Bucket": bucket, "Key": parked.key},
        Metadata=head.get("Metadata", {}),
        ContentType=head.get("ContentType", "binary/octet-stream"),
        MetadataDirective="REPLACE",
    )
    return None


def redrive(s3, sqs, bucket: str, queue_url: str, chosen: set[str] | None, drop: bool) -> list[tuple[Parked, str]]:
    """Replay the chosen events (all when chosen is None); returns (event, what happened) for each."""
    taken = take(sqs, queue_url)
    outcome, untouched = [], []
    for parked in taken:
        if chosen is not None and parked.message_id not in chosen:
            untouched.append(parked)
            continue
        why_not = replay(s3, bucket, parked)
        if why_not is None or drop:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=parked.receipt_handle)
            outcome.append((parked, "replayed" if why_not is None else f"dropped: {why_not}"))
        else:
            untouched.append(parked)
            outcome.append((parked, f"kept: {why_not}"))
    release(sqs, queue_url, untouched)
    if chosen is not None:
        missing = chosen - {parked.message_id for parked in taken}
        outcome += [(Parked(m, "", "", "", "", ""), "not in the dead-letter queue") for m in sorted(missing)]
    return outcome
