"""A real S3 API server on loopback for the object-storage tests: moto's standalone server (as the
s3fs project's own tests use), reached the way users reach MinIO or Ceph: ``AWS_ENDPOINT_URL``."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "cadence-test", "AWS_SECRET_ACCESS_KEY": "cadence-test",
               "AWS_DEFAULT_REGION": "us-east-1"}


@contextmanager
def s3_server() -> Iterator[str]:
    """Start the server, point this process (and the processes it starts) at it, and yield a fresh
    bucket's URI; everything is put back as it was afterwards."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = CREDENTIALS | {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_EC2_METADATA_DISABLED": "true"}
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
        server.stop()


def upload(folder: Path, uri: str) -> str:
    """Every file under ``folder`` (links followed) put under ``uri``; returns ``uri``."""
    from cadence.pipelines.storage import Location

    for path in sorted(folder.rglob("*")):
        if path.is_file():
            (Location.of(uri) / path.relative_to(folder).as_posix()).write_bytes(path.read_bytes())
    return uri
