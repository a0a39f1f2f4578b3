"""One writer at a time: a lock file beside what is written, on a local disk or in object storage.

Locally the lock is ``flock`` on the file (the kernel drops it when its process dies).  On S3 (and
S3-compatible servers) it is an object created by a conditional put (``If-None-Match: *``), which
the store refuses while the object exists; its holder rewrites it every ``HEARTBEAT`` seconds, and a
lock not rewritten for ``STALE`` seconds is a run that died and is taken over.  Other filesystems
get the same object lock made by "create if absent": good enough for one team, not a guarantee.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator

from .errors import InputError
from .storage import Location, storage_errors

HEARTBEAT, STALE = 20.0, 90.0


class LockHeld(InputError):
    """Another run holds the lock."""


def _holder() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}


def _refused(lock: Location, what: str, holder: dict | str) -> LockHeld:
    if isinstance(holder, dict):
        holder = f"process {holder.get('pid')} on {holder.get('host')}"
    return LockHeld(lock.parent, f"is being written by another {what} ({holder})",
                    "wait for it to end, then run again: only what it did not do is done")


@contextlib.contextmanager
def exclusive(lock: Location, what: str) -> Iterator[None]:
    """Hold the lock at ``lock`` while the block runs; :class:`LockHeld` (naming the holder) when
    another run holds it.  ``what`` names the kind of run in that message."""
    if not lock.remote:
        with _local_lock(lock, what):
            yield
    elif lock.scheme == "s3":
        with _object_lock(lock, what, _S3(lock)):
            yield
    else:
        with _object_lock(lock, what, _CreateIfAbsent(lock)):
            yield


@contextlib.contextmanager
def _local_lock(lock: Location, what: str) -> Iterator[None]:
    import fcntl

    with open(lock.local(), "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise _refused(lock, what, f"process {f.read().strip() or 'unknown'}") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _object_lock(lock: Location, what: str, store) -> Iterator[None]:
    body = _holder()
    if not store.create(body):
        current = store.read()
        if current is not None and time.time() - current[1] < STALE:
            raise _refused(lock, what, current[0])
        store.delete()  # a run that died holding it: take it over
        if not store.create(body):
            raise _refused(lock, what, (store.read() or ({}, 0))[0])
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT):
            with contextlib.suppress(Exception):
                store.rewrite(_holder())

    beating = threading.Thread(target=beat, name="cadence-lock", daemon=True)
    beating.start()
    try:
        yield
    finally:
        stop.set()
        beating.join()
        with contextlib.suppress(Exception):
            store.delete()


class _S3:
    """The lock object through boto3, which has the conditional put pyarrow lacks."""

    def __init__(self, lock: Location):
        import boto3

        self.client, self.bucket, self.key, self.lock = boto3.client("s3"), lock.authority, lock.key, lock

    def create(self, body: dict) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=json.dumps(body).encode(), IfNoneMatch="*")
            return True
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise _client_error(self.lock, e) from e

    def read(self) -> tuple[dict, float] | None:
        from botocore.exceptions import ClientError

        try:
            got = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError:
            return None
        with contextlib.suppress(ValueError):
            return json.loads(got["Body"].read()), got["LastModified"].timestamp()
        return {}, got["LastModified"].timestamp()

    def rewrite(self, body: dict) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self.key, Body=json.dumps(body).encode())

    def delete(self) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key)


def _client_error(where: Location, e: Exception) -> InputError:
    code = getattr(e, "response", {}).get("Error", {}).get("Code", "")
    try:
        with storage_errors(where):
            raise OSError(f"{code}: {e}")
    except InputError as error:
        return error


class _CreateIfAbsent:
    """The lock object on a filesystem with no conditional put: looked for, then written."""

    def __init__(self, lock: Location):
        self.lock = lock

    def create(self, body: dict) -> bool:
        if self.lock.exists():
            return False
        self.lock.write_bytes(json.dumps(body).encode())
        return True

    def read(self) -> tuple[dict, float] | None:
        try:
            body = json.loads(self.lock.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return body, float(body.get("time", 0))

    def rewrite(self, body: dict) -> None:
        self.lock.write_bytes(json.dumps(body).encode())

    def delete(self) -> None:
        with storage_errors(self.lock):
            self.lock.delete()
