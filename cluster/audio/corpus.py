"""A corpus's files, wherever they are: the manifest that lists them, their content hashes
(cached by size and modification time), their rates and durations, and their bytes read ahead
from object storage.  :mod:`cadence.cluster.audio.features` extracts them."""

from __future__ import annotations

import collections
import contextlib
import csv
import hashlib
import io
import itertools
import json
import os
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq

from cadence.pipelines.audio import HIGHEST_FEATURE_RATE, audio_info, feature_rate
from cadence.pipelines.errors import AudioNotFoundError, InputError
from cadence.pipelines.storage import Location, is_uri

from cadence.cluster.audio.store import FeatureStore, ManifestRow

READERS = 16  # files read at once from object storage
REMOTE_LOOKED_AT = 32  # headers read for the default rate of a corpus in object storage


def read_manifest(manifest: str | os.PathLike) -> list[ManifestRow]:
    """``path,label[,split]`` with a header; the manifest and its paths may be URIs, and relative
    paths resolve against the manifest's own folder (or bucket prefix)."""
    m = Location.of(manifest)
    try:
        text = m.read_text()
    except FileNotFoundError:
        raise InputError(m, m.missing(), "give a CSV file with path,label[,split]") from None
    except OSError as e:
        raise InputError(m, f"cannot be read ({e.strerror or e})", "give a CSV file with path,label[,split]") from e
    except UnicodeDecodeError as e:
        raise InputError(m, f"is not a readable CSV file ({e})") from e
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = set(reader.fieldnames or [])
        if not {"path", "label"} <= fields:
            raise InputError(m, f"has columns {sorted(fields)}", "the header must be path,label[,split]")
        rows = [_manifest_row(m, reader, r) for r in reader]
    except csv.Error as e:
        raise InputError(m, f"is not a readable CSV file ({e})") from e
    if not rows:
        raise InputError(m, "lists no files", "add one line per audio file: path,label[,split]")
    return rows


def _manifest_row(manifest: Location, reader: csv.DictReader, r: dict) -> ManifestRow:
    if not (r["path"] or "").strip() or not (r["label"] or "").strip():
        lacking = "path" if not (r["path"] or "").strip() else "label"
        raise InputError(manifest, f"line {reader.line_num} has no {lacking}"
                                   f" ({','.join(str(v) for v in r.values() if v is not None)[:60]!r})",
                         "every line needs path,label[,split]; quote a field holding a comma")
    return ManifestRow(str(manifest.resolve(r["path"])), r["label"].strip(), (r.get("split") or "train").strip())


def default_sample_rate(rows: Sequence[ManifestRow], root: str | os.PathLike, window_duration: float,
                        overlap_factor: float, looked_at: int = 1000) -> tuple[int, str]:
    """The rate to extract at when none is given, and why.

    A store already under ``root`` for these windows keeps its rate (so a re-run adds to it).
    Otherwise the rate follows the files as in the Python API (:func:`feature_rate`: the highest,
    at most 16 kHz), read from the headers of ``looked_at`` files spread over the manifest.
    """
    kept = []
    for folder in Location.of(root).folders():
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            params = json.loads((folder / "extractor.json").read_text())["params"]
            if params["window_duration"] == window_duration and params["overlap_factor"] == overlap_factor:
                kept.append(int(params["sample_rate"]))
    if len(set(kept)) == 1:
        return kept[0], f"the rate of the store already in {root}"
    if any(is_uri(r.path) for r in rows[:1]):
        looked_at = min(looked_at, REMOTE_LOOKED_AT)  # each header is a request to the object store
    step = max(1, len(rows) // looked_at)

    def rate_of(row: ManifestRow) -> int | None:
        with contextlib.suppress(Exception):  # a bad file is reported when it is extracted
            return int(audio_info(row.path).samplerate)
        return None

    with ThreadPoolExecutor(READERS) as pool:
        rates = [r for r in pool.map(rate_of, rows[::step]) if r is not None]
    rate = feature_rate(rates)
    if not rates:
        return rate, "the default (no file's rate could be read)"
    if max(rates) > rate:
        return rate, f"the most features use (files at up to {max(rates)} Hz)"
    return rate, f"the files' own rate ({HIGHEST_FEATURE_RATE} Hz is the most features use; resampling up adds nothing)"


def content_hash(path: str) -> str:
    """SHA-256 of the file's bytes (a path or a URI, read in chunks)."""
    digest = hashlib.sha256()
    where = Location.of(path)
    with (where.filesystem.open_input_stream(where.fs_path) if where.remote else open(path, "rb")) as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Stamps:
    """(size, modification time) of files by path or URI: a local file's from the disk, a remote
    one's from one listing of its folder (a request per thousand files, not one per file)."""

    def __init__(self):
        self.folders: dict[str, dict[str, tuple[int, int]]] = {}

    def __call__(self, path: str) -> tuple[int, int]:
        """OSError when there is no such file."""
        if not is_uri(path):
            stat = os.stat(path)
            return stat.st_size, stat.st_mtime_ns
        where = Location.of(path)
        folder = str(where.parent)
        if folder not in self.folders:
            self.folders[folder] = where.parent.listing()
        stamp = self.folders[folder].get(where.name)
        if stamp is None:
            raise FileNotFoundError(path)
        return stamp


def fetched(paths: Iterable[str], ahead: int = 32) -> Iterator[bytes | None | Exception]:
    """Each file's bytes in order, read ``READERS`` at a time and at most ``ahead`` files ahead (an
    object store answers each request after a round trip; reading one after another would wait on
    every one); None for a local file (read where it is decoded), the error for one that fails."""
    def fetch(path: str) -> bytes | None | Exception:
        if not is_uri(path):
            return None
        try:
            return Location.of(path).read_bytes()
        except FileNotFoundError:
            return AudioNotFoundError(path, Location.of(path).missing(), "check the manifest's path")
        except Exception as e:  # noqa: BLE001 - the file's own error, reported with it
            return e

    paths = iter(paths)
    with ThreadPoolExecutor(READERS) as pool:
        pending = collections.deque(pool.submit(fetch, p) for p in itertools.islice(paths, ahead))
        while pending:
            data = pending.popleft().result()
            for path in itertools.islice(paths, 1):
                pending.append(pool.submit(fetch, path))
            yield data


class Durations:
    """Seconds of audio in a file, read from its header; in object storage estimated from its size
    at the bytes per second of the first file whose header was read (a request per file saved)."""

    def __init__(self, stamps: Stamps):
        self.stamps, self.per_byte = stamps, None

    def __call__(self, path: str) -> float:
        if not is_uri(path) or self.per_byte is None:
            info = audio_info(path)
            seconds = info.frames / info.samplerate
            if is_uri(path):
                self.per_byte = seconds / max(1, self.stamps(path)[0])
            return seconds
        return self.stamps(path)[0] * self.per_byte




class HashCache:
    """Content hashes by (path, size, modification time), kept in the store, so a re-run reads only
    new or changed files instead of hashing the whole corpus again."""

    SCHEMA = pa.schema([("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()),
                        ("content_hash", pa.string())])

    def __init__(self, store: FeatureStore):
        self.file = store.path / "hashes.parquet"
        self.known: dict[tuple, str] = {}
        self.stamps = Stamps()
        if self.file.exists():
            try:
                t = pq.read_table(self.file.fs_path, schema=self.SCHEMA, filesystem=self.file.filesystem).to_pydict()
            except (pa.ArrowInvalid, OSError) as e:  # only a cache: hash the files again, and write it anew
                warnings.warn(f"{self.file}: unreadable ({e}); the files are hashed again and it is rewritten",
                              stacklevel=2)
                return
            self.known = {(p, s, m): h for p, s, m, h in zip(t["path"], t["size"], t["mtime_ns"], t["content_hash"])}

        self.stamps = Stamps()

    def digest(self, path: str) -> str | None:
        """The file's content hash; "" when it cannot be read (extraction then names the problem);
        None for a new file in object storage, which is hashed where it is read for extraction
        rather than fetched twice."""
        try:
            key = (path, *self.stamps(path))
            if key not in self.known:
                if is_uri(path):
                    return None
                self.known[key] = content_hash(path)
            return self.known[key]
        except (OSError, InputError):
            return ""

    def learn(self, path: str, digest: str) -> None:
        """Keep a hash found by the extraction (of a file :meth:`digest` left unhashed)."""
        with contextlib.suppress(OSError, InputError):
            self.known[(path, *self.stamps(path))] = digest

    def save(self) -> None:
        keys = list(self.known)
        table = pa.table({"path": [k[0] for k in keys], "size": [k[1] for k in keys],
                          "mtime_ns": [k[2] for k in keys], "content_hash": list(self.known.values())},
                         schema=self.SCHEMA)
        self.file.write_parquet(table)


