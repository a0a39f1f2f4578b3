"""Writing a file so that readers only ever see a whole one: write under a hidden name, then rename.

A crash, even ``kill -9``, while writing leaves the previous file (or none) in place, never half of
one: ``os.replace`` swaps the name in one step on the same file system.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_atomically(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a hidden path beside ``path`` to write to; on success it takes ``path``'s name.

    The written file is flushed to disk first; on an error the hidden file is removed and ``path``
    is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hidden = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield hidden
        with open(hidden, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(hidden, path)
    finally:
        hidden.unlink(missing_ok=True)


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` as the whole file at ``path`` (a path or a URI, :mod:`.storage`)."""
    from .storage import Location

    Location.of(path).write_bytes(data)


def write_parquet_atomically(table, path: str | os.PathLike) -> None:
    """Write a pyarrow table as one Parquet file that readers only ever see whole (a path or a URI)."""
    from .storage import Location

    Location.of(path).write_parquet(table)

