"""The feature store: a folder of Parquet parts under ``ROOT/<extractor fingerprint>/``, one
extractor's features, written a whole part at a time (atomically) and read back in chunks.
``ROOT`` is a local folder or a URI (``s3://bucket/features``): every node reads it the same way.
``cadence features`` (:mod:`cadence.cluster.audio.features`) fills it; training reads it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from cadence.pipelines.audio import AudioFeaturePrint
from cadence.pipelines.errors import InputError
from cadence.pipelines.locks import exclusive
from cadence.pipelines.storage import Location, storage_errors

CLIP = -1  # window_index of the row that pools a whole file's windows


def feature_schema(dimension: int) -> pa.Schema:
    return pa.schema([
        ("path", pa.string()), ("content_hash", pa.string()), ("label", pa.string()), ("split", pa.string()),
        ("window_index", pa.int32()), ("start_time", pa.float32()), ("duration", pa.float32()),
        ("vector", pa.list_(pa.float32(), dimension)),
    ])


LABELS = pa.schema([("content_hash", pa.string()), ("path", pa.string()), ("label", pa.string()),
                    ("split", pa.string())])
ERRORS = pa.schema([("path", pa.string()), ("content_hash", pa.string()), ("error", pa.string()),
                    ("time", pa.timestamp("s"))])


@dataclass(frozen=True)
class ManifestRow:
    path: str
    label: str
    split: str


def vectors(rows: pa.RecordBatch | pa.Table) -> np.ndarray:
    """The ``vector`` column as an (n, dimension) float32 matrix."""
    column = rows.column("vector")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return column.flatten().to_numpy().reshape(rows.num_rows, -1)


class FeatureStore:
    """The features of one extractor under ``root`` (a folder or a URI, :mod:`cadence.pipelines.storage`):
    write whole parts, read rows back in chunks."""

    def __init__(self, root: str | os.PathLike | Location, extractor: AudioFeaturePrint):
        self.root = Location.of(root)
        self.extractor = extractor
        self.path = self.root / extractor.fingerprint()
        self.schema = feature_schema(extractor.DIMENSION)
        self._checked: set[Location] = set()
        self._labels: tuple[tuple, dict] | None = None

    def create(self) -> FeatureStore:
        self.path.make_folder()
        spec = self.path / "extractor.json"
        if not spec.exists():
            spec.write_bytes(json.dumps(self.extractor.identity(), indent=1).encode())
        return self

    def _parts(self, prefix: str) -> list[Location]:
        """The store's parts, each checked once to be a readable Parquet file (its footer read)."""
        parts = self.path.files(f"{prefix}-", ".parquet")
        for part in parts:
            if part not in self._checked:
                try:
                    with storage_errors(part):
                        pq.read_metadata(part.fs_path, filesystem=part.filesystem)
                except (pa.ArrowInvalid, OSError) as e:
                    raise InputError(part, f"is not a readable Parquet part of the store ({e})",
                                     "delete it and run cadence features again: only the files it held are "
                                     "extracted again") from e
                self._checked.add(part)
        return parts

    def _dataset(self, prefix: str, schema: pa.Schema) -> ds.Dataset:
        parts = self._parts(prefix)
        return ds.dataset([p.fs_path for p in parts], schema=schema, format="parquet",
                          filesystem=self.path.filesystem)

    def dataset(self) -> ds.Dataset:
        return self._dataset("part", self.schema)

    def hashes(self) -> set[str]:
        """Content hashes of every file already in the store."""
        return set(self.dataset().to_table(columns=["content_hash"]).column("content_hash").to_pylist())

    def write_part(self, rows: pa.Table, errors: pa.Table) -> None:
        """Rows of whole files, named after those files: a repeat write replaces, never duplicates."""
        key = hashlib.sha256("".join(sorted(set(rows.column("content_hash").to_pylist() +
                                                errors.column("path").to_pylist()))).encode()).hexdigest()[:24]
        if rows.num_rows:
            (self.path / f"part-{key}.parquet").write_parquet(rows)
        if errors.num_rows:
            (self.path / f"errors-{key}.parquet").write_parquet(errors)

    @contextlib.contextmanager
    def writing(self) -> Iterator[FeatureStore]:
        """Hold the store's write lock: a second run writing the same store at once (another runner,
        another terminal, another machine) is refused rather than storing the same files twice.
        On object storage the lock is an object made by a conditional put (:mod:`cadence.pipelines.locks`)."""
        self.create()
        with exclusive(self.path / ".lock", "cadence features run"):
            yield self

    # -- labels: the latest manifest's, kept apart from the features ------------------------------
    def write_labels(self, rows: Sequence[tuple[ManifestRow, str]]) -> None:
        """Record the manifest's files (with their content hashes) as the store's labels and splits:
        rows are read with these, and files no longer listed are left out.  Cheap: no re-extraction."""
        seen: dict[str, ManifestRow] = {}
        for row, digest in rows:
            if digest:
                seen.setdefault(digest, row)
        table = pa.table({"content_hash": list(seen), "path": [r.path for r in seen.values()],
                          "label": [r.label for r in seen.values()], "split": [r.split for r in seen.values()]},
                         schema=LABELS)
        (self.path / "labels.parquet").write_parquet(table)
        self._labels = None

    def labels(self) -> dict[str, tuple[str, str, str]] | None:
        """Content hash -> (label, split, path) from the latest manifest; None for a store written before
        labels were kept apart (its rows' own columns are used)."""
        file = self.path / "labels.parquet"
        stamp = file.stamp()
        if stamp is None:
            return None
        if self._labels is None or self._labels[0] != stamp:
            try:
                with storage_errors(file):
                    t = pq.read_table(file.fs_path, schema=LABELS, filesystem=file.filesystem).to_pydict()
            except (pa.ArrowInvalid, OSError) as e:
                raise InputError(file, f"cannot be read ({e})", "run cadence features again with the manifest: "
                                                                 "it is rewritten, nothing is extracted again") from e
            self._labels = (stamp, dict(zip(t["content_hash"], zip(t["label"], t["split"], t["path"]))))
        return self._labels[1]

    def _relabelled(self, batch: pa.RecordBatch, columns: Sequence[str] | None) -> pa.RecordBatch:
        """The batch with its label, split and path from the latest manifest, and only ``columns``."""
        labels = self.labels()
        if labels is not None and len(batch):
            hashes = batch.column("content_hash").to_pylist()
            for i, name in enumerate(("label", "split", "path")):
                if name in batch.schema.names:
                    index = batch.schema.get_field_index(name)
                    batch = batch.set_column(index, name, pa.array([labels[h][i] for h in hashes], pa.string()))
        return batch.select(list(columns)) if columns is not None else batch

    # -- reading --------------------------------------------------------------------------------
    def table(self, columns: Sequence[str] | None = None, split: str | None = None,
              level: str = "clip") -> pa.Table:
        batches = list(self.iter_batches(1 << 16, split, level, columns))
        schema = self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        return pa.Table.from_batches(batches, schema=schema)

    def iter_batches(self, batch_size: int, split: str | None = None, level: str = "clip",
                     columns: Sequence[str] | None = None,
                     order: np.random.Generator | None = None) -> Iterator[pa.RecordBatch]:
        """Rows in batches of at most ``batch_size``, reading only as much as each batch needs;
        with ``order``, part by part in an order drawn from it (a shuffle that stays streaming)."""
        dataset, expression, read = self.dataset(), self.expression(split, level), columns and list(columns)
        if order is None:
            fragments = [dataset]
        else:
            parts = list(dataset.get_fragments())
            fragments = [parts[i] for i in order.permutation(len(parts))]
        seen: set[tuple[str, int]] = set()  # a file's rows are read once, even if two parts hold them
        for fragment in fragments:
            for batch in fragment.to_batches(columns=self._with_keys(read), filter=expression, batch_size=batch_size):
                batch = self._once(batch, seen)
                if len(batch):
                    yield self._relabelled(batch, columns)

    @staticmethod
    def _with_keys(columns: list[str] | None) -> list[str] | None:
        return None if columns is None else list(dict.fromkeys([*columns, "content_hash", "window_index"]))

    @staticmethod
    def _once(batch: pa.RecordBatch, seen: set[tuple[str, int]]) -> pa.RecordBatch:
        keys = zip(batch.column("content_hash").to_pylist(), batch.column("window_index").to_pylist())
        keep = []
        for key in keys:
            keep.append(key not in seen)
            seen.add(key)
        return batch if all(keep) else batch.filter(pa.array(keep))

    def count_rows(self, split: str | None = None, level: str = "clip") -> int:
        return sum(len(b) for b in self.iter_batches(1 << 16, split, level, columns=["content_hash"]))

    def expression(self, split: str | None, level: str) -> ds.Expression:
        """The rows of one split (all when None) at clip or window level; with the latest manifest's
        labels, only files it lists, in the split it gives them."""
        if level not in ("clip", "window"):
            raise ValueError(f"FeatureStore: level must be 'clip' or 'window', got {level!r}")
        expression = ds.field("window_index") == CLIP if level == "clip" else ds.field("window_index") >= 0
        labels = self.labels()
        if labels is None:
            return expression if split is None else expression & (ds.field("split") == split)
        listed = [h for h, (_, s, _) in labels.items() if split is None or s == split]
        return expression & ds.field("content_hash").isin(pa.array(listed, pa.string()))

    def errors(self) -> pa.Table:
        return self._dataset("errors", ERRORS).to_table()
