"""A real S3 API server on loopback for the object-storage tests: moto's standalone server (as the
s3fs project's own tests use), reached the way users reach MinIO or Ceph: ``AWS_ENDPOINT_URL``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .helpers import free_port, wait_for

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "cadence-test", "AWS_SECRET_ACCESS_KEY": "cadence-test",
               "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def moto_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """moto's standalone S3 server in a process of its own on a free loopback port (with ``env``
    for its settings), listening: yields its endpoint URL, and stops it afterwards.

    A process of its own, as users run MinIO or Ceph: run as a thread of this process (moto's
    ``ThreadedMotoServer``), it shared the interpreter with the clients it answers, pyarrow's S3
    filesystem among them, and the fast tier once stalled for over twelve minutes in the
    object-storage tests, where an earlier CI run had run out of time."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env=None if env is None else os.environ | env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _listening(server, port), 60, f"moto's S3 server to listen on port {port}", every=0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.kill()
        server.wait()


def _listening(server: subprocess.Popen, port: int) -> bool:
    if server.poll() is not None:
        raise RuntimeError(f"moto's S3 server exited ({server.returncode}) before listening on port {port}")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@contextmanager
def s3_server() -> Iterator[str]:
    """Start the server (:func:`moto_server`), point this process (and the processes it starts) at
    it, and yield a fresh bucket's URI; everything is put back as it was afterwards."""
    with moto_server() as endpoint:
        settings = CREDENTIALS | {"AWS_ENDPOINT_URL": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
        before = {k: os.environ.get(k) for k in settings}
        os.environ.update(settings)
        try:
            import boto3

            bucket = f"cadence-{uuid.uuid4().hex[:12]}"
            boto3.client("s3").create_bucket(Bucket=bucket)
            yield f"s3://{bucket}"
        finally:
            for key, value in before.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def upload(folder: Path, uri: str) -> str:
    """Every file under ``folder`` (links followed) put under ``uri``; returns ``uri``."""
    from cadence.pipelines.storage import Location

    for path in sorted(folder.rglob("*")):
        if path.is_file():
            (Location.of(uri) / path.relative_to(folder).as_posix()).write_bytes(path.read_bytes())
    return uri
