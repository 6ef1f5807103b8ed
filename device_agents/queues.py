"""The agent's disk-backed queues: an inbox of messages taken from the hub and an outbox of results to send.

Side effects: one SQLite database (WAL mode) in the agent's state folder, a host-mounted volume on a device, so
both queues survive ``kill -9``, module restarts and reboots. An input is written to the inbox before the broker
is acknowledged (see ``device_agents.ack``); scoring moves it to the outbox in one transaction (the input is
deleted and its result inserted together, so a crash leaves one or the other, never both or neither); a result
leaves the outbox only once the hub acknowledged it. Replays are in order.

The outbox is bounded by count and bytes: when a new result does not fit, the oldest results are dropped and
counted (``dropped``), never silently. The inbox is not dropped from: the agent stops taking input while it is
full (``inbox_full``), which leaves the messages with the broker.

``synchronous=NORMAL`` survives a killed process (and a clean reboot); ``sync="full"`` also survives a power cut,
at the cost of an fsync per transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass, field
from typing import Iterable

from edgepack.runtime.edge import EdgeSettings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS inbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, message TEXT NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, message TEXT NOT NULL, body BLOB NOT NULL,
                                   size INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclass(frozen=True)
class Envelope:
    """A message as the queues keep it: its body and the metadata that travels with it.

    ``channel`` is the input a message came in on (inbox) or the output its result goes to (outbox).
    """

    channel: str
    message_id: str
    body: bytes
    correlation_id: str | None = None
    content_type: str | None = None
    content_encoding: str | None = None
    properties: dict[str, str] = field(default_factory=dict)
    seq: int = 0

    def _meta(self) -> str:
        return json.dumps({"channel": self.channel, "message_id": self.message_id,
                           "correlation_id": self.correlation_id, "content_type": self.content_type,
                           "content_encoding": self.content_encoding, "properties": self.properties},
                          sort_keys=True, separators=(",", ":"))

    @classmethod
    def _load(cls, seq: int, meta: str, body: bytes) -> "Envelope":
        return cls(body=bytes(body), seq=seq, **json.loads(meta))


class Queues:
    """The inbox and the outbox in one database; safe to use from several threads."""

    def __init__(self, path: str, *, max_results: int = EdgeSettings.max_results,
                 max_result_bytes: int = EdgeSettings.max_result_bytes,
                 max_inputs: int = 256, sync: str = "normal") -> None:
        if sync not in ("normal", "full"):
            raise ValueError(f"sync must be 'normal' or 'full', not {sync!r}")
        self.path = path
        self.max_results, self.max_result_bytes, self.max_inputs = max_results, max_result_bytes, max_inputs
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={sync.upper()}")
        self._db.executescript(_SCHEMA)
        self._inputs = self._count("inbox")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _count(self, table: str) -> int:
        return int(self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    # -- inbox
    @property
    def inbox_full(self) -> bool:
        """True while the inbox holds ``max_inputs`` messages: take no more input until scoring catches up."""
        return self._inputs >= self.max_inputs

    def take(self, message: Envelope) -> None:
        """Store one input (before the broker is acknowledged)."""
        with self._lock:
            self._db.execute("INSERT INTO inbox (message, body) VALUES (?, ?)", (message._meta(), message.body))
            self._inputs += 1

    def inputs(self, limit: int) -> list[Envelope]:
        """The oldest ``limit`` inputs, in arrival order."""
        with self._lock:
            rows = self._db.execute("SELECT seq, message, body FROM inbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [Envelope._load(*row) for row in rows]

    def settle(self, inputs: Iterable[Envelope], results: Iterable[Envelope]) -> int:
        """Replace scored inputs by their results in one transaction; returns how many old results were dropped
        to make room (oldest first)."""
        done = [(m.seq,) for m in inputs]
        rows = [(r._meta(), r.body, len(r.body)) for r in results]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM inbox WHERE seq = ?", done)
                self._db.executemany("INSERT INTO outbox (message, body, size) VALUES (?, ?, ?)", rows)
                dropped = self._enforce_bounds()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._inputs = self._count("inbox")
        return dropped

    def _enforce_bounds(self) -> int:
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        if count <= self.max_results and size <= self.max_result_bytes:
            return 0
        dropped = 0
        for seq, item_size in self._db.execute("SELECT seq, size FROM outbox ORDER BY seq").fetchall():
            if count <= self.max_results and size <= self.max_result_bytes:
                break
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            count, size, dropped = count - 1, size - item_size, dropped + 1
        self._db.execute("INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                         "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value", (dropped,))
        return dropped

    # -- outbox
    def pending(self, limit: int = 1) -> list[Envelope]:
        """The oldest ``limit`` results not yet acknowledged by the hub, in order."""
        with self._lock:
            rows = self._db.execute("SELECT seq, message, body FROM outbox ORDER BY seq LIMIT ?", (limit,)).fetchall()
        return [Envelope._load(*row) for row in rows]

    def delivered(self, results: list[Envelope]) -> None:
        """The hub acknowledged ``results``: forget them, in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", [(r.seq,) for r in results])
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def depth(self) -> tuple[int, int]:
        """(results waiting, their bytes)."""
        with self._lock:
            count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox").fetchone()
        return int(count), int(size)

    @property
    def input_depth(self) -> int:
        return self._inputs

    @property
    def dropped(self) -> int:
        """Results dropped in all to keep the outbox within its bounds (kept across restarts)."""
        with self._lock:
            row = self._db.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()
        return int(row[0]) if row else 0
