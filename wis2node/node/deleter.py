"""Settled events leave the queue ten a request; the poller holds at most so many at once."""

from __future__ import annotations

import logging
import threading

LOG = logging.getLogger("wis2node.node.agent")


class Deleter:
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
                failed = self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(index), "ReceiptHandle": handle} for index, handle in enumerate(batch)],
                ).get("Failed")
                if failed:
                    LOG.warning(
                        "%d events not deleted (they come back and are announced again): %s", len(failed), failed
                    )
            except Exception:  # they come back, and are announced again with the same data_id
                LOG.exception("could not delete %d settled events; they will be announced again", len(batch))


def acquire_up_to(slots: threading.BoundedSemaphore, most: int, stopping: threading.Event) -> int:
    """Wait for one free slot (0 if the agent stops first), then take what else is free, up to `most`."""
    while not slots.acquire(timeout=0.5):
        if stopping.is_set():
            return 0
    held = 1
    while held < most and slots.acquire(blocking=False):
        held += 1
    return held
