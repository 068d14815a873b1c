"""The storage contract: one protocol every backend implements, and the errors they raise.

Each error carries the failure class the worker records, so a storage problem becomes a job failure with
the right retry behaviour without the worker knowing which backend raised it.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from framefleet.core.failures import FailureClass


class StorageError(Exception):
    """A storage operation failed; `failure_class` says how, `message` says why in plain words."""

    failure_class: FailureClass = FailureClass.internal

    def __init__(self, message: str, *, failure_class: FailureClass | None = None) -> None:
        super().__init__(message)
        self.message = message
        if failure_class is not None:
            self.failure_class = failure_class


class StorageNotFound(StorageError):
    """The object or file does not exist."""

    failure_class = FailureClass.input_invalid


class StorageDenied(StorageError):
    """Refused: a path escaping its root, a forbidden address, or access denied by the store."""

    failure_class = FailureClass.storage_denied


class StorageUnavailable(StorageError):
    """The store cannot be reached right now: unreachable host, timeout, server error."""

    failure_class = FailureClass.storage_unavailable


class StorageTooLarge(StorageError):
    """The object is larger than the configured limit."""

    # input_invalid rather than resource_exhausted: the limit is a policy on the input, not a shortage on
    # this worker, so the same input fails the same way on every attempt and retrying only re-downloads it.
    failure_class = FailureClass.input_invalid


class Digest(Protocol):
    """A running hash (hashlib's objects): fed each byte of an input as it is fetched."""

    def update(self, data: bytes, /) -> None: ...


class HashingWriter(io.RawIOBase):
    """A write-only, non-seekable file that feeds a digest and passes the bytes on, in order.

    Non-seekable on purpose: download managers then write the parts in order (parallel transfers
    reorder them in memory), so the hash is of the content as it lands, with no second read.
    """

    def __init__(self, target: IO[bytes], digest: Digest) -> None:
        super().__init__()
        self._target = target
        self._digest = digest

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def write(self, data: bytes) -> int:  # type: ignore[override]
        view = bytes(data)
        self._digest.update(view)
        self._target.write(view)
        return len(view)


def digest_file(path: Path, digest: Digest, chunk: int = 1024 * 1024) -> None:
    """Feed a local file to `digest` (inputs used in place are not fetched, so they are read once here)."""
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)


@runtime_checkable
class StorageBackend(Protocol):
    """What the worker needs from a store: fetch inputs, publish outputs atomically, probe readiness."""

    scheme: str

    def fetch(
        self, uri: str, workdir: Path, *, name: str | None = None, digest: Digest | None = None
    ) -> Path:
        """Make the object available as a local file and return its path.

        Remote objects are downloaded into `workdir` as `name` (default: the URI's last segment);
        local files are used in place and `name` is ignored. `digest`, when given, is fed every byte
        of the content (the input's fingerprint for the result cache).
        """
        ...

    def put(self, local: Path, uri: str, *, move: bool = False, replace: bool = True) -> int:
        """Publish a local file at `uri` atomically; return its size in bytes.

        With `move=True` the local file is consumed (renamed or deleted after upload), saving a copy.
        With `replace=False` an object already at `uri` is left alone and StorageDenied is raised.
        """
        ...

    def exists(self, uri: str) -> bool:
        """Whether an object exists at `uri`."""
        ...

    def delete(self, uri: str) -> None:
        """Remove the object at `uri`; a missing object is not an error."""
        ...

    def check(self) -> None:
        """Readiness probe: raise StorageUnavailable when the store cannot be reached."""
        ...


def safe_filename(name: str, default: str) -> str:
    """A single path component safe to create in a work directory, derived from a remote name."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch != "\x00").strip()
    if name in ("", ".", "..") or name.startswith("."):
        # Hidden names would collide with the ".<name>.part" temporaries and are never real media names.
        name = f"{default}{name}" if name not in ("", ".", "..") else default
    return name[:200]


def temp_path_in(directory: Path, name: str) -> Path:
    """A fresh, empty temporary file next to `name` in `directory` (so os.replace onto it is atomic)."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".part")
    os.close(fd)
    return Path(tmp)


def fsync_directory(directory: Path) -> None:
    """Persist a rename in `directory` (the entry itself, not just the file data)."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        # Some filesystems refuse fsync on directories; the rename is still atomic, only less durable.
        pass
    finally:
        os.close(fd)


MAX_KEY_BYTES = 1024


def check_object_key(key: str, uri: str) -> str:
    """`key` when it can name an object in a bucket or container (S3, Azure Blob, GCS), else StorageError.

    Object stores keep '.' and '..' as literal characters, but any tool that treats keys as paths would not:
    a key must name one place, whoever reads it, for the tenant prefixes to mean anything.
    """
    if not key:
        raise StorageError(f"URI names no object: {uri!r}", failure_class=FailureClass.input_invalid)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise StorageDenied(f"control character in object name {key!r}")
    if any(segment in (".", "..") for segment in key.split("/")):
        raise StorageDenied(f"'.' or '..' segment in object name {key!r}")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise StorageError(
            f"object name longer than {MAX_KEY_BYTES} bytes", failure_class=FailureClass.input_invalid
        )
    return key
