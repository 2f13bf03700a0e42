"""What the node has announced, on the data volume: so restarts keep update, deletion and metadata-first right."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

EVENT_MEMORY_DAYS = 14  # SQS keeps a message at most 14 days: no event comes back after that


@dataclass(frozen=True)
class Announced:
    """A key's dataset, data_id and pubtime (RFC 3339) as last announced."""

    metadata_id: str | None = None
    data_id: str | None = None
    pubtime: str | None = None


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
        # Added with datasets by topic: what a key was announced with, so its updates and deletion
        # keep its data_id and metadata_id and each update's pubtime is later than the last.
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(objects)")}
        for column in ("metadata_id", "data_id", "pubtime"):
            if column not in columns:
                self.db.execute(f"ALTER TABLE objects ADD COLUMN {column} TEXT")

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

    def published(
        self,
        key: str,
        deleted: bool,
        metadata_id: str | None = None,
        digest: str | None = None,
        *,
        announced: Announced | None = None,
    ) -> None:
        """Record a publication: the key is live (or deleted), a record's id and content, and what the
        key was announced with (`announced`: its dataset, data_id and pubtime)."""
        with self.lock:
            self._published(key, deleted, metadata_id, digest, announced)

    def _published(
        self,
        key: str,
        deleted: bool,
        metadata_id: str | None,
        digest: str | None,
        announced: Announced | None = None,
    ) -> None:
        announced = announced or Announced()
        self.db.execute(
            "INSERT OR REPLACE INTO objects (key, live, metadata_id, data_id, pubtime) VALUES (?, ?, ?, ?, ?)",
            (key, 0 if deleted else 1, announced.metadata_id, announced.data_id, announced.pubtime),
        )
        if metadata_id and not deleted:
            self.db.execute("INSERT OR REPLACE INTO metadata VALUES (?, ?)", (metadata_id, key))
            self.db.execute("INSERT OR REPLACE INTO metadata_content VALUES (?, ?)", (key, digest))
        if metadata_id and deleted:
            self.db.execute("DELETE FROM metadata WHERE id = ?", (metadata_id,))
        if deleted:
            self.db.execute("DELETE FROM metadata_content WHERE key = ?", (key,))

    def announced_content(self, key: str) -> str | None:
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

    def is_live(self, key: str) -> bool:
        """Whether the node published this key and has not announced its deletion since."""
        with self.lock:
            row = self.db.execute("SELECT live FROM objects WHERE key = ?", (key,)).fetchone()
        return bool(row and row[0])

    def announced(self, key: str) -> Announced:
        """What the key was last announced with (all None if never, or before the node kept it)."""
        with self.lock:
            row = self.db.execute("SELECT metadata_id, data_id, pubtime FROM objects WHERE key = ?", (key,)).fetchone()
        return Announced(*row) if row else Announced()

    def metadata_id_of(self, key: str) -> str | None:
        """The id of the discovery metadata record announced under this key."""
        with self.lock:
            row = self.db.execute("SELECT id FROM metadata WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None
