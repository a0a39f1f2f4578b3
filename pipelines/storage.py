"""Where files live: a local path, or a URI of any filesystem pyarrow or fsspec knows.

``s3://bucket/key``, ``gs://``, ``abfs://``, ``hdfs://`` (pyarrow's own filesystems), any other
scheme an installed fsspec package registers (``memory://``, ``az://``, ...), ``file://`` or a
plain path.  Credentials come from each filesystem's usual places (the environment, profile
files, instance roles), never from cadence's own options; an S3-compatible server (MinIO, Ceph,
a test server) is reached through the AWS SDKs' standard ``AWS_ENDPOINT_URL`` variable.

>>> notes = Location.of("memory://cadence-doc/notes") / "a.txt"
>>> notes.write_bytes(b"hello")
>>> notes.read_bytes(), notes.exists(), notes.parent.is_dir()
(b'hello', True, True)
>>> str(Location.of("memory://cadence-doc/notes/sub/../a.txt"))
'memory://cadence-doc/notes/a.txt'
"""

from __future__ import annotations

import contextlib
import functools
import os
import posixpath
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_OBJECT_STORES = ("s3", "gs", "gcs", "abfs", "abfss", "az")  # a whole object appears at once: no rename needed
KNOWN = "a plain path, or a URI such as s3://bucket/key, gs://, abfs://, hdfs:// or file://"


def scheme_of(name: str | os.PathLike) -> str:
    """The URI's scheme in lower case; "" for a plain path (and for ``file://``)."""
    match = _SCHEME.match(str(name))
    scheme = match.group(1).lower() if match else ""
    return "" if scheme == "file" else scheme


def is_uri(name: str | os.PathLike) -> bool:
    """Whether ``name`` is on a filesystem other than this machine's (``file://`` is local)."""
    return bool(scheme_of(name))


def _local(name: str) -> str:
    return name[len("file://"):] if name.lower().startswith("file://") else name


@functools.lru_cache(maxsize=32)
def _filesystem(scheme: str, authority: str):
    """One filesystem per scheme and bucket (account, host) in a process: pyarrow's own where it
    has one, else fsspec's, wrapped for pyarrow."""
    import pyarrow.fs as pafs

    try:
        return pafs.FileSystem.from_uri(f"{scheme}://{authority}")[0]
    except (ValueError, OSError):  # pyarrow knows no such scheme (ArrowInvalid is a ValueError)
        pass
    import fsspec

    try:
        fs = fsspec.filesystem(scheme)
    except ImportError as e:
        raise InputError(f"{scheme}://{authority}", f"needs a package that is not installed ({e})",
                         f"pip install the fsspec package for {scheme}://") from None
    except ValueError:
        raise InputError(f"{scheme}://{authority}", f"has a scheme {scheme}:// no filesystem knows",
                         f"give {KNOWN}") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs))


class Location:
    """A file or folder named by a path or a URI: what cadence reads and writes goes through it.

    ``str()`` gives it back as the user wrote it (normalised), for messages; it travels to Ray
    workers as that text and finds its filesystem, with that worker's credentials, there."""

    def __init__(self, text: str):
        self.scheme = scheme_of(text)
        if self.scheme:
            rest = text[len(self.scheme) + 3:]
            authority, _, key = rest.partition("/")
            key = posixpath.normpath("/" + key).lstrip("/") if key else ""
            self.text = f"{self.scheme}://{authority}" + (f"/{key}" if key else "")
            self.authority, self.key = authority, key
        else:
            self.text = os.path.normpath(_local(text))
            self.authority, self.key = "", self.text

    @classmethod
    def of(cls, name: str | os.PathLike | Location) -> Location:
        return name if isinstance(name, Location) else cls(os.fspath(name))

    def __reduce__(self):
        return Location, (self.text,)

    def __fspath__(self) -> str:  # a local one stands in for its path (open(), Path(), os.path)
        if self.remote:
            raise TypeError(f"{self.text} is a URI, not a path on this machine")
        return self.text

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"Location({self.text!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Location) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)

    def __truediv__(self, part: str) -> Location:
        if self.scheme:
            return Location(f"{self.text.rstrip('/')}/{part}")
        return Location(os.path.join(self.text, part))

    @property
    def remote(self) -> bool:
        return bool(self.scheme)

    @property
    def name(self) -> str:
        return posixpath.basename(self.key) if self.remote else os.path.basename(self.text)

    @property
    def stem(self) -> str:
        """The name less its last suffix: ``model`` of ``model.safetensors``."""
        stem, dot, _ = self.name.rpartition(".")
        return stem if dot and stem else self.name

    @property
    def suffix(self) -> str:
        """The name's last suffix with its dot (``.safetensors``), or ""."""
        return self.name[len(self.stem):]

    def beside(self, suffix: str) -> Location:
        """A file in the same folder named after this one: ``model.safetensors`` and ``-curve.png``
        give ``model-curve.png``."""
        return self.parent / f"{self.stem}{suffix}" if self.remote else Location(
            os.path.join(os.path.dirname(self.text), f"{self.stem}{suffix}"))

    @property
    def parent(self) -> Location:
        if self.remote:
            return Location(f"{self.scheme}://{self.authority}/{posixpath.dirname(self.key)}")
        return Location(os.path.dirname(self.text) or ".")

    def local(self) -> Path:
        """The local path; an error for a URI (for the few tools that need a real file)."""
        if self.remote:
            raise InputError(self.text, "must be a local path here", "give a path on this machine")
        return Path(self.text)

    def resolve(self, relative: str) -> Location:
        """``relative`` (a path or URI from a file found here, such as a manifest) resolved against
        this location's folder: URIs and absolute paths are kept as they are."""
        if is_uri(relative) or (not self.remote and os.path.isabs(_local(relative))):
            return Location(relative)
        if self.remote and relative.startswith("/"):
            return Location(f"{self.scheme}://{self.authority}{relative}")
        if not self.remote:  # absolute: it is read elsewhere too (Ray workers start in folders of their own)
            return Location(os.path.join(os.path.dirname(os.path.abspath(self.text)), _local(relative)))
        return self.parent / relative

    # -- the filesystem ----------------------------------------------------------------------------
    @property
    def filesystem(self):
        import pyarrow.fs as pafs

        if not self.remote:
            return pafs.LocalFileSystem()
        try:
            return _filesystem(self.scheme, self.authority)
        except InputError as e:
            raise InputError(self.text, e.problem, e.hint) from None

    def missing(self) -> str:
        """Why a file here is not found, in words: no such file, or no such bucket."""
        if self.remote and self.authority and not Location(f"{self.scheme}://{self.authority}").exists():
            return f"its bucket {self.authority} does not exist (create it, or correct its name)"
        return "no such file"

    @property
    def fs_path(self) -> str:
        """The path inside :attr:`filesystem` (``bucket/key`` for object stores)."""
        if not self.remote:
            return os.path.abspath(self.text)
        fs = self.filesystem
        if type(fs).__name__ == "PyFileSystem":  # fsspec's own way to name it
            return fs.handler.fs._strip_protocol(self.text)
        return f"{self.authority}/{self.key}".rstrip("/")

    def _info(self):
        with storage_errors(self):
            return self.filesystem.get_file_info(self.fs_path)

    def exists(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type != pafs.FileType.NotFound

    def is_dir(self) -> bool:
        import pyarrow.fs as pafs

        return self._info().type == pafs.FileType.Directory

    def stamp(self) -> tuple[int, int] | None:
        """(size, modification time in ns) of a file, None when there is none: what changes when it does."""
        import pyarrow.fs as pafs

        info = self._info()
        if info.type != pafs.FileType.File:
            return None
        return info.size or 0, info.mtime_ns or 0

    def files(self, prefix: str = "", suffix: str = "") -> list[Location]:
        """The files directly in this folder whose names start with ``prefix`` and end with
        ``suffix`` (hidden ones left out), sorted; none when the folder does not exist."""
        import pyarrow.fs as pafs

        with storage_errors(self):
            found = self.filesystem.get_file_info(pafs.FileSelector(self.fs_path, allow_not_found=True))
        names = sorted(posixpath.basename(i.path) for i in found if i.type == pafs.FileType.File)
        return [self / n for n in names if n.startswith(prefix) and n.endswith(suffix) and not n.startswith(".")]

    def listing(self) -> dict[str, tuple[int, int]]:
        """Name -> (size, modification time in ns) of each file directly in this folder, from one
        listing (on object stores, a request per thousand files)."""
        import pyarrow.fs as pafs

        with storage_errors(self):
            found = self.filesystem.get_file_info(pafs.FileSelector(self.fs_path, allow_not_found=True))
        return {posixpath.basename(i.path): (i.size or 0, i.mtime_ns or 0)
                for i in found if i.type == pafs.FileType.File}

    def folders(self) -> list[Location]:
        import pyarrow.fs as pafs

        with storage_errors(self):
            found = self.filesystem.get_file_info(pafs.FileSelector(self.fs_path, allow_not_found=True))
        return [self / posixpath.basename(i.path) for i in sorted(found, key=lambda i: i.path)
                if i.type == pafs.FileType.Directory]

    def make_folder(self) -> Location:
        with storage_errors(self):
            self.filesystem.create_dir(self.fs_path, recursive=True)
        return self

    def read_bytes(self) -> bytes:
        if not self.remote:
            with storage_errors(self):
                return Path(self.text).read_bytes()
        with storage_errors(self), self.filesystem.open_input_stream(self.fs_path) as f:
            return f.read()

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError), storage_errors(self):
            self.filesystem.delete_file(self.fs_path)

    def delete_folder(self) -> None:
        """Remove an empty folder (on object stores, its marker if it has one)."""
        with contextlib.suppress(OSError):
            if self.remote:
                self.filesystem.delete_dir(self.fs_path)
            else:
                os.rmdir(self.text)

    @contextlib.contextmanager
    def written(self) -> Iterator[str]:
        """A path in :attr:`filesystem` to write the whole file to; readers see it only once it is
        whole.  Local files and other filesystems take a hidden name, then are renamed; on object
        stores an object appears whole when its upload ends, so it is written in place."""
        if self.scheme in _OBJECT_STORES:
            with storage_errors(self):
                yield self.fs_path
            return
        if not self.remote:
            from .files import replaced_atomically

            with replaced_atomically(self.text) as hidden:
                yield str(hidden)
            return
        hidden = posixpath.join(posixpath.dirname(self.fs_path), f".{self.name}.{uuid.uuid4().hex}.tmp")
        fs = self.filesystem
        with storage_errors(self):
            fs.create_dir(posixpath.dirname(self.fs_path), recursive=True)
            try:
                yield hidden
                fs.move(hidden, self.fs_path)
            finally:
                with contextlib.suppress(OSError):
                    fs.delete_file(hidden)

    def write_bytes(self, data: bytes) -> None:
        """Write the whole file, atomically (see :meth:`written`)."""
        with self.written() as path:
            if self.remote:
                with self.filesystem.open_output_stream(path) as f:
                    f.write(data)
            else:
                Path(path).write_bytes(data)

    def write_parquet(self, table) -> None:
        """Write a pyarrow table as one Parquet file, atomically."""
        import pyarrow.parquet as pq

        with self.written() as path:
            pq.write_table(table, path, filesystem=self.filesystem if self.remote else None)


_PROBLEMS = (  # (what pyarrow, fsspec or the SDK says, what it means, what to do)
    (("NO_SUCH_BUCKET", "NoSuchBucket", "bucket does not exist", "To create buckets"), "its bucket does not exist",
     "create the bucket, or correct its name"),
    (("ACCESS_DENIED", "AccessDenied", "Forbidden", "403", "PermissionError", "Permission denied"),
     "permission denied", "check the credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
     "~/.aws/credentials, GOOGLE_APPLICATION_CREDENTIALS) and what they may do there"),
    (("credentials", "Credentials", "INVALID_ACCESS_KEY", "SignatureDoesNotMatch", "InvalidAccessKeyId"),
     "no valid credentials", "set them where the filesystem's SDK looks (for S3: AWS_PROFILE or "
     "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"),
    (("Couldn't connect", "Could not connect", "Connection refused", "NETWORK_CONNECTION", "resolve host"),
     "cannot be reached", "check the network and, for an S3-compatible server, AWS_ENDPOINT_URL"),
)


@contextlib.contextmanager
def storage_errors(where: Location | str) -> Iterator[None]:
    """Turn a filesystem's error into an :class:`InputError` naming the URI, what is wrong and what
    to do; a missing file stays a ``FileNotFoundError`` (callers decide what that means)."""
    try:
        yield
    except InputError:
        raise
    except FileNotFoundError as e:
        if is_uri(str(where)) and "bucket" in str(e).lower():
            raise InputError(where, "its bucket does not exist", "create the bucket, or correct its name") from e
        raise
    except (OSError, ValueError) as e:
        text = f"{type(e).__name__}: {e}"
        for signs, problem, hint in _PROBLEMS:
            if any(sign in text for sign in signs):
                raise InputError(where, f"{problem} ({_first_line(e)})", hint) from e
        if isinstance(e, OSError) or "filesystem" in str(e).lower():
            raise InputError(where, f"cannot be used ({_first_line(e)})") from e
        raise


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


def check_reachable(name: str | os.PathLike | Location, option: str) -> None:
    """Refuse, before any work, a URI whose filesystem is unknown or whose bucket does not exist
    (``option`` names it); a local path passes (its folders are made as needed)."""
    where = Location.of(name)
    if where.remote and where.authority and not Location(f"{where.scheme}://{where.authority}").exists():
        raise InputError(where, f"({option}) cannot be used: its bucket {where.authority} does not exist",
                         "create the bucket, or correct its name")


def check_writable_folder(name: str | os.PathLike | Location, option: str) -> None:
    """Refuse, before any work, an output whose folder cannot hold it: a local folder that does not
    exist, or a URI whose bucket (or filesystem) cannot be reached."""
    where = Location.of(name)
    if not where.remote:
        folder = Path(where.text).absolute().parent
        if not folder.is_dir():
            raise InputError(where, f"({option}) cannot be written: its folder {folder} does not exist",
                             "create the folder, or choose another path")
        return
    bucket = Location(f"{where.scheme}://{where.authority}")
    if not bucket.exists():
        raise InputError(where, f"({option}) cannot be written: its bucket {where.authority} does not exist",
                         "create the bucket, or correct its name")
