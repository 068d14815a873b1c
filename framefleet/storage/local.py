"""Local storage: file:// URIs confined to configured root directories.

A URI is checked twice: lexically (no host, no `..`, no encoded separators or NUL, no query) and then
after resolving symlinks, so that neither a crafted URI nor a symlink planted inside a root can reach a
file outside the roots.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

from framefleet.core.failures import FailureClass, classify_os_error
from framefleet.storage.base import (
    Digest,
    StorageDenied,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
    digest_file,
    fsync_directory,
    temp_path_in,
)

_COPY_CHUNK = 1024 * 1024
_OUTPUT_MODE = 0o644


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def parse_file_uri(uri: str) -> str:
    """The absolute, percent-decoded path named by a file:// URI, refusing anything ambiguous."""
    if "\x00" in uri or "%00" in uri:
        raise StorageDenied(f"NUL byte in file URI {uri!r}")
    # urlsplit silently drops tabs and newlines, so a URI containing them would name another path.
    if _has_control(uri):
        raise StorageDenied(f"control character in file URI {uri!r}")
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        raise StorageDenied(f"not a file:// URI: {uri!r}")
    if parts.netloc not in ("", "localhost"):
        raise StorageDenied(f"file URI names host {parts.netloc!r}; only local paths are allowed: {uri!r}")
    if "?" in uri or "#" in uri:
        raise StorageDenied(f"file URI must not carry a query or fragment (encode '?' and '#'): {uri!r}")
    raw = parts.path
    if not raw.startswith("/"):
        raise StorageDenied(f"file URI path must be absolute: {uri!r}")
    segments: list[str] = []
    for raw_segment in raw[1:].split("/"):
        if raw_segment == "":
            # Covers file:////etc (a UNC-style double slash) and stray '//' or a trailing '/'.
            raise StorageDenied(f"empty path segment in file URI {uri!r}")
        data = unquote_to_bytes(raw_segment)
        if b"/" in data or b"\\" in data:
            raise StorageDenied(f"encoded path separator in file URI {uri!r}")
        try:
            segment = data.decode("utf-8")
        except UnicodeDecodeError:
            raise StorageDenied(f"file URI is not valid UTF-8 after percent-decoding: {uri!r}") from None
        if segment in (".", ".."):
            raise StorageDenied(f"'{segment}' segment in file URI {uri!r}")
        if _has_control(segment):
            raise StorageDenied(f"control character in file URI {uri!r}")
        segments.append(segment)
    return "/" + "/".join(segments)


def _os_error(exc: OSError, what: str) -> StorageError:
    """Map an OSError from the local filesystem to the storage error the worker understands (by errno)."""
    detail = f"{what}: {exc.strerror or exc}"
    failure = classify_os_error(exc.errno)
    if failure is FailureClass.storage_denied:
        return StorageDenied(detail)
    if failure is FailureClass.input_invalid:
        return StorageNotFound(detail)
    if failure is FailureClass.storage_unavailable:
        return StorageUnavailable(detail)
    return StorageError(detail, failure_class=failure)


# Filesystems without hard links answer os.link with one of these; a publish there checks, then renames.
_NO_LINKS = frozenset({errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK})


def _place_new(tmp: Path, final: Path) -> None:
    """Give `tmp` the name `final` only if nothing has that name yet (FileExistsError otherwise).

    A hard link is the atomic "create, never replace" of POSIX filesystems, NFS included. Where links are
    not supported the check and the rename are two steps, so a writer racing between them can still be
    replaced.
    """
    try:
        os.link(tmp, final)
    except FileExistsError:
        # Over NFS a link the server made can still be answered EEXIST, when the client resends a request
        # whose reply was lost. The link count of the temporary tells: two means the new name is ours.
        if os.stat(tmp).st_nlink != 2 or not os.path.samestat(os.stat(tmp), os.lstat(final)):
            raise
    except OSError as exc:
        if exc.errno not in _NO_LINKS:
            raise
        if os.path.lexists(final):
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(final)) from None
        os.replace(tmp, final)
        return
    tmp.unlink()


class LocalStorage:
    """file:// storage confined to `roots` (every path must resolve inside one of them)."""

    scheme = "file"

    def __init__(self, roots: Sequence[Path]) -> None:
        if not roots:
            raise ValueError("LocalStorage needs at least one root directory")
        # Roots are resolved once so that a root given through a symlink still contains its real paths.
        self.roots: tuple[Path, ...] = tuple(Path(os.path.realpath(Path(r).expanduser())) for r in roots)

    def _inside(self, path: Path) -> bool:
        return any(path == root or path.is_relative_to(root) for root in self.roots)

    def _is_root(self, path: Path) -> bool:
        return path in self.roots

    def _resolve(self, path: str) -> Path:
        try:
            return Path(path).resolve(strict=False)
        except (RuntimeError, OSError) as exc:
            # Python reports a symlink loop as RuntimeError before 3.13 and OSError(ELOOP) after.
            raise StorageDenied(
                f"cannot resolve {path}: symlink loop or unreadable path ({type(exc).__name__})"
            ) from None

    def _confine(self, lexical: str, resolved: Path) -> Path:
        if self._inside(resolved):
            return resolved
        if self._inside(Path(lexical)):
            # Where the link points is not said: the answer would let a tenant map the filesystem.
            raise StorageDenied(
                f"{lexical} goes through a symlink leading outside the allowed storage; refused"
            )
        raise StorageDenied(f"{lexical} is outside the allowed storage; refused")

    def path_for(self, uri: str, *, for_output: bool = False) -> Path:
        """The validated local path for `uri`: symlinks resolved, inside a root, or StorageDenied.

        For outputs only the parent directory is resolved: a symlink in the final position is then
        replaced or removed itself, never written through.
        """
        lexical = parse_file_uri(uri)
        if not for_output:
            return self._confine(lexical, self._resolve(lexical))
        head, name = lexical.rsplit("/", 1)
        parent = self._confine(head or "/", self._resolve(head or "/"))
        path = parent / name
        if self._is_root(path):
            raise StorageDenied(f"{lexical} is a storage root, not a file inside one")
        return path

    def fetch(
        self, uri: str, workdir: Path, *, name: str | None = None, digest: Digest | None = None
    ) -> Path:
        """Return the input's resolved path in place; nothing is copied into `workdir`, `name` is unused.

        With `digest` the file is read once to hash it (the one read a local input gets before ffmpeg's,
        which then finds it in the page cache)."""
        path = self.path_for(uri)
        try:
            info = path.stat()
        except FileNotFoundError:
            raise StorageNotFound(f"no such file: {path}") from None
        except OSError as exc:
            raise _os_error(exc, f"cannot read {path}") from None
        if not stat.S_ISREG(info.st_mode):
            raise StorageError(f"not a regular file: {path}", failure_class=FailureClass.input_invalid)
        if not os.access(path, os.R_OK):
            raise StorageDenied(f"no permission to read {path}")
        if digest is not None:
            try:
                digest_file(path, digest)
            except OSError as exc:
                raise _os_error(exc, f"cannot read {path}") from None
        return path

    def put(self, local: Path, uri: str, *, move: bool = False, replace: bool = True) -> int:
        """Publish `local` at `uri` atomically (temp file in the same directory, fsync, rename).

        Safe on NFS as well as local disks: the temporary is created in the destination's own directory
        (a rename or link never crosses directories or filesystems), its data is fsynced before it gets the
        final name (NFS writes back on close or fsync, not before), and the directory is fsynced after.

        With `move=True` the local file is renamed into place when it lives on the same filesystem,
        avoiding a copy of large outputs; otherwise it is copied and left where it was. With
        `replace=False` an existing file (or link) at `uri` is never replaced: StorageDenied instead.
        """
        dest = self.path_for(uri, for_output=True)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _os_error(exc, f"cannot create {dest.parent}") from None
        # The directories may have been created by someone else meanwhile: confirm they are still ours.
        real_parent = Path(os.path.realpath(dest.parent))
        if not self._inside(real_parent):
            raise StorageDenied(f"{dest.parent} now leads outside the allowed storage; refused")
        if dest.is_dir() and not dest.is_symlink():
            raise StorageError(
                f"destination is a directory: {dest}", failure_class=FailureClass.input_invalid
            )
        try:
            source_info = local.stat()
        except OSError as exc:
            raise StorageError(f"local file {local} is not readable: {exc}") from None
        if not stat.S_ISREG(source_info.st_mode):
            raise StorageError(f"local file {local} is not a regular file")

        try:
            tmp = temp_path_in(real_parent, dest.name)
        except OSError as exc:
            raise _os_error(exc, f"cannot write in {real_parent}") from None
        moved = False
        try:
            if move:
                try:
                    os.replace(local, tmp)
                    moved = True
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
            if moved:
                with open(tmp, "rb+") as handle:
                    os.fsync(handle.fileno())
            else:
                with open(local, "rb") as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst, _COPY_CHUNK)
                    dst.flush()
                    os.fsync(dst.fileno())
            os.chmod(tmp, _OUTPUT_MODE)
            size = tmp.stat().st_size
            if replace:
                os.replace(tmp, real_parent / dest.name)
            else:
                _place_new(tmp, real_parent / dest.name)
        except BaseException as exc:
            self._discard(tmp, restore_to=local if moved else None)
            if isinstance(exc, FileExistsError) and not replace:
                raise StorageDenied(f"{dest} already exists and this job may not replace it") from None
            if isinstance(exc, OSError):
                raise _os_error(exc, f"cannot write {dest}") from None
            raise
        fsync_directory(real_parent)
        return size

    @staticmethod
    def _discard(tmp: Path, restore_to: Path | None) -> None:
        """Remove a failed put's temporary, giving a moved source back its name rather than losing it."""
        if restore_to is not None:
            try:
                os.replace(tmp, restore_to)
                return
            except OSError:
                pass
        tmp.unlink(missing_ok=True)

    def exists(self, uri: str) -> bool:
        """Whether a regular file exists at `uri`."""
        path = self.path_for(uri)
        try:
            return stat.S_ISREG(path.stat().st_mode)
        except FileNotFoundError:
            return False
        except NotADirectoryError:
            return False
        except OSError as exc:
            raise _os_error(exc, f"cannot inspect {path}") from None

    def delete(self, uri: str) -> None:
        """Remove the file (or symlink) at `uri`; missing is fine, directories are refused."""
        path = self.path_for(uri, for_output=True)
        try:
            if path.is_dir() and not path.is_symlink():
                raise StorageError(
                    f"refusing to delete a directory: {path}", failure_class=FailureClass.input_invalid
                )
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _os_error(exc, f"cannot delete {path}") from None

    def check(self) -> None:
        """Every root must exist as a searchable directory."""
        for root in self.roots:
            if not root.is_dir():
                raise StorageUnavailable(f"storage root {root} does not exist or is not a directory")
            if not os.access(root, os.R_OK | os.X_OK):
                raise StorageUnavailable(f"storage root {root} is not readable")
