"""LocalStorage: confinement to the roots, atomic publication, fetch in place."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from pathlib import Path

import pytest

from framefleet.core.failures import FailureClass
from framefleet.storage import local as local_module
from framefleet.storage.base import StorageDenied, StorageError, StorageNotFound, StorageUnavailable
from framefleet.storage.local import LocalStorage, parse_file_uri


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    (path / "inputs").mkdir(parents=True)
    (path / "inputs" / "clip.mp4").write_bytes(b"video-bytes")
    return path


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("secret")
    return path


@pytest.fixture()
def store(root: Path) -> LocalStorage:
    return LocalStorage([root])


def test_fetch_returns_the_resolved_file_in_place(store: LocalStorage, root: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    got = store.fetch((root / "inputs" / "clip.mp4").as_uri(), workdir)
    assert got == (root / "inputs" / "clip.mp4").resolve()
    assert got.read_bytes() == b"video-bytes"
    assert not workdir.exists()  # nothing copied


def test_fetch_accepts_localhost_and_percent_encoded_names(store: LocalStorage, root: Path) -> None:
    (root / "inputs" / "my clip é.mp4").write_bytes(b"x")
    uri = (root / "inputs" / "my clip é.mp4").as_uri()
    assert "%20" in uri
    assert store.fetch(uri, root).name == "my clip é.mp4"
    assert store.fetch(f"file://localhost{root}/inputs/clip.mp4", root).name == "clip.mp4"


def test_fetch_follows_symlinks_that_stay_inside(store: LocalStorage, root: Path) -> None:
    (root / "alias.mp4").symlink_to(root / "inputs" / "clip.mp4")
    assert store.fetch((root / "alias.mp4").as_uri(), root) == (root / "inputs" / "clip.mp4").resolve()


def test_fetch_missing_file_is_not_found(store: LocalStorage, root: Path) -> None:
    with pytest.raises(StorageNotFound) as info:
        store.fetch((root / "inputs" / "nope.mp4").as_uri(), root)
    assert info.value.failure_class is FailureClass.input_invalid


def test_fetch_directory_is_input_invalid(store: LocalStorage, root: Path) -> None:
    with pytest.raises(StorageError) as info:
        store.fetch((root / "inputs").as_uri(), root)
    assert info.value.failure_class is FailureClass.input_invalid
    assert "regular file" in str(info.value)


@pytest.mark.parametrize(
    ("suffix", "problem"),
    [
        ("/inputs/../../outside/secret.txt", "'..'"),
        ("/inputs/%2e%2e/%2E%2E/outside/secret.txt", "'..'"),
        ("/inputs/..%2f..%2foutside/secret.txt", "encoded path separator"),
        ("/inputs/%2F..%2Foutside", "encoded path separator"),
        ("/inputs/..%5c..%5coutside", "encoded path separator"),
        ("/inputs/./clip.mp4", "'.'"),
        ("/inputs/clip.mp4%00.txt", "NUL"),
        ("/inputs/clip.mp4\x00.txt", "NUL"),
        ("/inputs/clip\n.mp4", "control character"),
        ("/inputs/clip.mp4?x=1", "query or fragment"),
        ("/inputs/clip.mp4#frag", "query or fragment"),
        ("/inputs//clip.mp4", "empty path segment"),
        ("/inputs/%ff.mp4", "UTF-8"),
    ],
)
def test_crafted_uris_are_denied(store: LocalStorage, root: Path, suffix: str, problem: str) -> None:
    with pytest.raises(StorageDenied, match=problem):
        store.fetch(f"file://{root}{suffix}", root)


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("file:////etc/passwd", "empty path segment"),
        ("file://otherhost/etc/passwd", "names host"),
        ("file://127.0.0.1/etc/passwd", "names host"),
        ("file://user@localhost/etc/passwd", "names host"),
        ("file:relative/path.mp4", "absolute"),
        ("s3://bucket/key", "not a file"),
    ],
)
def test_host_and_shape_tricks_are_denied(store: LocalStorage, uri: str, problem: str) -> None:
    with pytest.raises(StorageDenied, match=problem):
        store.path_for(uri)


def test_absolute_path_outside_roots_is_denied(store: LocalStorage, outside: Path) -> None:
    with pytest.raises(StorageDenied, match="outside the allowed storage"):
        store.fetch((outside / "secret.txt").as_uri(), outside)
    with pytest.raises(StorageDenied):
        store.fetch("file:///etc/passwd", outside)


def test_sibling_with_common_prefix_is_outside(store: LocalStorage, root: Path) -> None:
    sibling = root.parent / (root.name + "-evil")
    sibling.mkdir()
    (sibling / "x.mp4").write_bytes(b"x")
    with pytest.raises(StorageDenied, match="outside"):
        store.fetch((sibling / "x.mp4").as_uri(), root)


def test_symlink_out_of_root_is_denied(store: LocalStorage, root: Path, outside: Path) -> None:
    (root / "inputs" / "link.txt").symlink_to(outside / "secret.txt")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    for uri in ((root / "inputs" / "link.txt").as_uri(), (root / "escape" / "secret.txt").as_uri()):
        with pytest.raises(StorageDenied, match="symlink") as refused:
            store.fetch(uri, root)
        # Refused without saying where the link goes: the message must not map the filesystem.
        assert str(outside) not in refused.value.message and "refused" in refused.value.message
    # Writing through a symlinked directory is refused too, and nothing lands outside.
    src = root / "inputs" / "clip.mp4"
    with pytest.raises(StorageDenied):
        store.put(src, (root / "escape" / "planted.mp4").as_uri())
    with pytest.raises(StorageDenied):
        store.put(src, (root / "escape" / "new" / "planted.mp4").as_uri())
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_symlink_loop_is_denied(store: LocalStorage, root: Path) -> None:
    (root / "a").symlink_to(root / "b")
    (root / "b").symlink_to(root / "a")
    with pytest.raises(StorageDenied):
        store.fetch((root / "a").as_uri(), root)


def test_root_reached_through_a_symlink_still_works(tmp_path: Path, root: Path) -> None:
    alias = tmp_path / "alias-root"
    alias.symlink_to(root, target_is_directory=True)
    store = LocalStorage([alias])
    assert store.fetch((alias / "inputs" / "clip.mp4").as_uri(), tmp_path).read_bytes() == b"video-bytes"
    assert store.fetch((root / "inputs" / "clip.mp4").as_uri(), tmp_path).read_bytes() == b"video-bytes"


def test_put_publishes_atomically_and_creates_parents(
    store: LocalStorage, root: Path, tmp_path: Path
) -> None:
    src = tmp_path / "out.mp4"
    src.write_bytes(b"a" * 100_000)
    dest = root / "outputs" / "job-1" / "out.mp4"
    assert store.put(src, dest.as_uri()) == 100_000
    assert dest.read_bytes() == src.read_bytes()
    assert src.exists()  # copied, not moved
    assert oct(dest.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["out.mp4"]  # no temp file left
    # Replacing an existing output also goes through a temp file.
    src.write_bytes(b"b" * 10)
    assert store.put(src, dest.as_uri()) == 10
    assert dest.read_bytes() == b"b" * 10
    assert sorted(p.name for p in dest.parent.iterdir()) == ["out.mp4"]


def test_put_move_renames_the_source(store: LocalStorage, root: Path) -> None:
    src = root / "work" / "out.mp4"
    src.parent.mkdir()
    src.write_bytes(b"m" * 1000)
    dest = root / "outputs" / "moved.mp4"
    assert store.put(src, dest.as_uri(), move=True) == 1000
    assert dest.read_bytes() == b"m" * 1000
    assert not src.exists()


def test_failure_mid_put_leaves_nothing_at_destination(
    store: LocalStorage, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "big.mp4"
    src.write_bytes(os.urandom(3 * 1024 * 1024))
    dest = root / "outputs" / "big.mp4"

    def copy_half_then_fail(fsrc, fdst, length=0):  # type: ignore[no-untyped-def]
        fdst.write(fsrc.read(1024 * 1024))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local_module.shutil, "copyfileobj", copy_half_then_fail)
    with pytest.raises(StorageError) as info:
        store.put(src, dest.as_uri())
    assert info.value.failure_class is FailureClass.resource_exhausted
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # the partial temp file is gone as well


def test_failure_mid_put_keeps_the_previous_version(
    store: LocalStorage, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = root / "outputs" / "keep.mp4"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"old")
    src = tmp_path / "new.mp4"
    src.write_bytes(b"new" * 1000)

    def failing_replace(a, b):  # type: ignore[no-untyped-def]
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(local_module.os, "replace", failing_replace)
    with pytest.raises(StorageUnavailable):
        store.put(src, dest.as_uri())
    assert dest.read_bytes() == b"old"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["keep.mp4"]


def test_failed_move_gives_the_source_back(
    store: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = root / "work" / "out.mp4"
    src.parent.mkdir()
    src.write_bytes(b"precious")
    dest = root / "outputs" / "out.mp4"
    real_chmod = os.chmod

    def failing_chmod(path, mode):  # type: ignore[no-untyped-def]
        if ".part" in str(path):
            raise OSError(errno.EIO, "Input/output error")
        real_chmod(path, mode)

    monkeypatch.setattr(local_module.os, "chmod", failing_chmod)
    with pytest.raises(StorageUnavailable):
        store.put(src, dest.as_uri(), move=True)
    assert src.read_bytes() == b"precious"
    assert not dest.exists()


def test_readers_never_see_a_partial_output(store: LocalStorage, root: Path, tmp_path: Path) -> None:
    size = 16 * 1024 * 1024
    src = tmp_path / "whole.bin"
    src.write_bytes(b"z" * size)
    dest = root / "outputs" / "whole.bin"
    dest.parent.mkdir(parents=True)
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                seen.append(dest.stat().st_size)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        store.put(src, dest.as_uri())
    finally:
        done.set()
        watcher.join()
    assert set(seen) <= {size}
    assert dest.stat().st_size == size


def test_put_refuses_outside_roots_and_onto_roots(store: LocalStorage, root: Path, outside: Path) -> None:
    src = root / "inputs" / "clip.mp4"
    with pytest.raises(StorageDenied):
        store.put(src, (outside / "x.mp4").as_uri())
    with pytest.raises(StorageDenied):
        store.put(src, f"file://{root}/outputs/../../outside/x.mp4")
    with pytest.raises(StorageDenied, match="outside the allowed storage"):
        store.put(src, root.as_uri())
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]


def test_put_over_symlink_replaces_the_link_not_its_target(
    store: LocalStorage, root: Path, outside: Path
) -> None:
    link = root / "out.txt"
    link.symlink_to(outside / "secret.txt")
    src = root / "inputs" / "clip.mp4"
    store.put(src, link.as_uri())
    assert not link.is_symlink()
    assert link.read_bytes() == b"video-bytes"
    assert (outside / "secret.txt").read_text() == "secret"


def test_exists_and_delete(store: LocalStorage, root: Path, outside: Path) -> None:
    uri = (root / "inputs" / "clip.mp4").as_uri()
    assert store.exists(uri)
    assert not store.exists((root / "inputs" / "missing.mp4").as_uri())
    assert not store.exists((root / "inputs").as_uri())
    store.delete(uri)
    assert not store.exists(uri)
    store.delete(uri)  # deleting a missing file is fine
    with pytest.raises(StorageError, match="directory"):
        store.delete((root / "inputs").as_uri())
    with pytest.raises(StorageDenied):
        store.delete((outside / "secret.txt").as_uri())
    # A symlink is removed itself, its target outside stays.
    (root / "link").symlink_to(outside / "secret.txt")
    store.delete((root / "link").as_uri())
    assert (outside / "secret.txt").exists()


def test_check(tmp_path: Path, root: Path) -> None:
    LocalStorage([root]).check()
    with pytest.raises(StorageUnavailable, match="does not exist"):
        LocalStorage([root, tmp_path / "missing"]).check()


def test_parse_file_uri_decodes_once() -> None:
    assert parse_file_uri("file:///a/b%20c/d.mp4") == "/a/b c/d.mp4"
    # A double-encoded dot-dot is a literal file name, not a traversal.
    assert parse_file_uri("file:///a/%252e%252e/x") == "/a/%2e%2e/x"


def test_put_without_replace_keeps_an_existing_file(store: LocalStorage, root: Path, tmp_path: Path) -> None:
    dest = root / "outputs" / "a.mp4"
    dest.parent.mkdir()
    dest.write_bytes(b"first")
    new = tmp_path / "new.mp4"
    new.write_bytes(b"second, longer")
    with pytest.raises(StorageDenied, match="already exists"):
        store.put(new, dest.as_uri(), replace=False)
    with pytest.raises(StorageDenied, match="already exists"):
        store.put(new, dest.as_uri(), move=True, replace=False)
    assert dest.read_bytes() == b"first"
    assert new.read_bytes() == b"second, longer", "a refused move gives the source back"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["a.mp4"], "no temporary left behind"
    # A dangling symlink is something existing too: never written through, never replaced.
    (root / "outputs" / "link.mp4").symlink_to(tmp_path / "elsewhere.mp4")
    with pytest.raises(StorageDenied, match="already exists"):
        store.put(new, (root / "outputs" / "link.mp4").as_uri(), replace=False)
    assert not (tmp_path / "elsewhere.mp4").exists()
    # A new name is created; replacing stays the default.
    assert store.put(new, (root / "outputs" / "b.mp4").as_uri(), replace=False) == len(b"second, longer")
    assert store.put(new, dest.as_uri()) == len(b"second, longer") and dest.read_bytes() == b"second, longer"


def test_publish_where_a_file_stands_for_a_folder_is_denied(store: LocalStorage, root: Path) -> None:
    # mkdir meets a file where a folder must be (EEXIST): permanent, never "unavailable" (which is retried).
    (root / "blocker").write_bytes(b"not a folder")
    src = root / "inputs" / "clip.mp4"
    with pytest.raises(StorageDenied):
        store.put(src, (root / "blocker" / "out" / "a.mp4").as_uri())
    with pytest.raises(StorageDenied):
        store.put(src, (root / "blocker" / "a.mp4").as_uri())


def test_create_only_publish_survives_a_resent_link_over_nfs(tmp_path: Path) -> None:
    """NFS can answer EEXIST to a link it made, when a resent request follows a lost reply: the link
    count of the temporary shows the name is ours. Another file under the name is still refused."""
    tmp, final = tmp_path / ".out.mp4.x.part", tmp_path / "out.mp4"
    tmp.write_bytes(b"ours")
    os.link(tmp, final)  # what the server did before its reply was lost
    local_module._place_new(tmp, final)
    assert final.read_bytes() == b"ours" and not tmp.exists()

    other = tmp_path / ".out.mp4.y.part"
    other.write_bytes(b"theirs")
    with pytest.raises(FileExistsError):
        local_module._place_new(other, final)
    assert final.read_bytes() == b"ours" and other.exists()
