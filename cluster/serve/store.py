"""``cadence serve``'s store: every feed, count update and repetition, in one SQLite file.

SQLite (Python's own ``sqlite3``) in write-ahead-log mode: one writer (the service's driver
thread) and any number of readers (the HTTP handlers) at once, and a write is on disk when its
transaction commits, so a killed service loses at most the last second of rows.

Each running feed's counting session is snapshotted every few seconds (``snapshot``, written by
:func:`~cadence.pipelines.snapshots.encode_snapshot`, no pickle), with the frame its source resumes
from and the last update row it covers.  Restarting the service on the same store reopens every feed
that was running from its snapshot and drops the update rows after it, which the restored session
produces again: counts carry on as if the service had never stopped.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cadence.pipelines.errors import InputError
from cadence.pipelines.results import CountUpdate, RepetitionEvent
from cadence.pipelines.snapshots import decode_snapshot, encode_snapshot

STORE_FILE = "counts.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feeds (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, source TEXT NOT NULL, settings TEXT NOT NULL,
    created REAL NOT NULL, state TEXT NOT NULL, count REAL NOT NULL DEFAULT 0,
    people TEXT NOT NULL DEFAULT '{}', frames INTEGER NOT NULL DEFAULT 0,
    frames_dropped INTEGER NOT NULL DEFAULT 0, downtime REAL NOT NULL DEFAULT 0, error TEXT,
    resume_index INTEGER NOT NULL DEFAULT 0, snapshot BLOB, snapshot_row INTEGER NOT NULL DEFAULT 0,
    reconnections INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS updates (
    row INTEGER PRIMARY KEY AUTOINCREMENT, feed TEXT NOT NULL, at REAL NOT NULL,
    frame_index INTEGER NOT NULL, timestamp REAL NOT NULL, count REAL NOT NULL, people TEXT
);
CREATE INDEX IF NOT EXISTS updates_by_feed ON updates (feed, row);
CREATE TABLE IF NOT EXISTS repetitions (
    row INTEGER PRIMARY KEY AUTOINCREMENT, feed TEXT NOT NULL, update_row INTEGER NOT NULL,
    person TEXT, number INTEGER NOT NULL, start_frame INTEGER NOT NULL, end_frame INTEGER NOT NULL,
    start_time REAL NOT NULL, end_time REAL NOT NULL, confidence REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS repetitions_by_feed ON repetitions (feed, row);
"""


@dataclass
class StoredFeed:
    """A feed as the store keeps it."""

    id: str
    name: str
    source: Any
    settings: dict
    created: float
    state: str
    count: float = 0.0
    people: dict | None = None
    frames: int = 0
    frames_dropped: int = 0
    downtime: float = 0.0
    error: str | None = None
    resume_index: int = 0
    snapshot: dict | None = None
    reconnections: int = 0


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


class CountStore:
    """The service's store in folder ``folder`` (file ``counts.sqlite``).  Writes come from one thread."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise InputError(folder, "is a file, not a folder", "give --store a folder (it is created if missing)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / STORE_FILE
        try:
            self._db = _connect(self.path)
            self._db.executescript(_SCHEMA)
            self._add_missing_columns()
        except sqlite3.DatabaseError as e:
            raise InputError(self.path, f"is not a cadence store SQLite can read ({e})",
                             "give --store another folder, or move this file away") from e

    def _add_missing_columns(self) -> None:
        """A store written before a column was added gets it, with its default."""
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(feeds)")}
        if "reconnections" not in columns:
            with self._db:
                self._db.execute("ALTER TABLE feeds ADD COLUMN reconnections INTEGER NOT NULL DEFAULT 0")

    # -- feeds --------------------------------------------------------------------------------
    def add_feed(self, feed: StoredFeed) -> None:
        with self._db:
            self._db.execute("INSERT INTO feeds (id, name, source, settings, created, state) VALUES (?,?,?,?,?,?)",
                             (feed.id, feed.name, json.dumps(feed.source), json.dumps(feed.settings), feed.created,
                              feed.state))

    def update_feed(self, feed_id: str, **values: Any) -> None:
        """Set columns of a feed's row (``people`` as a dict, ``snapshot`` as a session state)."""
        if "people" in values:
            values["people"] = json.dumps(values["people"])
        if "snapshot" in values:
            state = values["snapshot"]
            values["snapshot"] = None if state is None else zlib.compress(encode_snapshot(state), 1)
            values["snapshot_row"] = self._last_row(feed_id)
        columns = ", ".join(f"{name} = ?" for name in values)
        with self._db:
            self._db.execute(f"UPDATE feeds SET {columns} WHERE id = ?", (*values.values(), feed_id))

    def _last_row(self, feed_id: str) -> int:
        row = self._db.execute("SELECT MAX(row) FROM updates WHERE feed = ?", (feed_id,)).fetchone()
        return row[0] or 0

    def feeds(self) -> list[StoredFeed]:
        rows = self._db.execute("SELECT id, name, source, settings, created, state, count, people, frames, "
                                "frames_dropped, downtime, error, resume_index, snapshot, reconnections FROM feeds "
                                "ORDER BY created")
        feeds = []
        for (fid, name, source, settings, created, state, count, people, frames, dropped, downtime, error,
             resume, snapshot, reconnections) in rows.fetchall():
            feeds.append(StoredFeed(fid, name, json.loads(source), json.loads(settings), created, state, count,
                                    json.loads(people), frames, dropped, downtime, error, resume,
                                    decode_snapshot(zlib.decompress(snapshot)) if snapshot else None,
                                    reconnections))
        return feeds

    def rewind(self, feed_id: str) -> None:
        """Drop a feed's rows written after its snapshot: its restored session writes them again."""
        (after,) = self._db.execute("SELECT snapshot_row FROM feeds WHERE id = ?", (feed_id,)).fetchone()
        with self._db:
            self._db.execute("DELETE FROM updates WHERE feed = ? AND row > ?", (feed_id, after))
            self._db.execute("DELETE FROM repetitions WHERE feed = ? AND update_row > ?", (feed_id, after))

    # -- counts -------------------------------------------------------------------------------
    def add_updates(self, feed_id: str, updates: list[CountUpdate], people: list[dict | None]) -> None:
        now = time.time()
        with self._db:
            for update, counts in zip(updates, people):
                cursor = self._db.execute(
                    "INSERT INTO updates (feed, at, frame_index, timestamp, count, people) VALUES (?,?,?,?,?,?)",
                    (feed_id, now, update.frame_index, update.timestamp, update.count,
                     None if counts is None else json.dumps(counts)))
                for r in update.repetitions:
                    self._db.execute(
                        "INSERT INTO repetitions (feed, update_row, person, number, start_frame, end_frame, "
                        "start_time, end_time, confidence) VALUES (?,?,?,?,?,?,?,?,?)",
                        (feed_id, cursor.lastrowid, None, r.index, r.start_frame, r.end_frame, r.start_time,
                         r.end_time, r.confidence))

    def history(self, feed_id: str, limit: int = 2000) -> list[dict]:
        """A feed's latest count updates, oldest first (read on a connection of the caller's own)."""
        with contextlib.closing(_connect(self.path)) as db:
            rows = db.execute("SELECT at, frame_index, timestamp, count, people FROM updates WHERE feed = ? "
                              "ORDER BY row DESC LIMIT ?", (feed_id, limit)).fetchall()
        return [{"at": at, "frame_index": index, "timestamp": timestamp, "count": count,
                 "people": json.loads(people) if people else None}
                for at, index, timestamp, count, people in reversed(rows)]

    def repetitions(self, feed_id: str) -> list[dict]:
        with contextlib.closing(_connect(self.path)) as db:
            rows = db.execute("SELECT number, start_frame, end_frame, start_time, end_time, confidence "
                              "FROM repetitions WHERE feed = ? ORDER BY row", (feed_id,)).fetchall()
        return [RepetitionEvent(feed_id, *row).to_dict() for row in rows]

    def close(self) -> None:
        self._db.close()
