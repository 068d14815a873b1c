"""Tenant namespaces: which locations a tenant may read and write (pure, on settings alone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from framefleet.config import Settings
from framefleet.storage.base import StorageDenied
from framefleet.storage.namespace import job_output_base, namespace_for


def settings_for(tmp_path: Path, **kwargs: object) -> Settings:
    # Every storage setting given: FRAMEFLEET_* variables of other tests in the session must not leak in.
    values: dict[str, object] = {
        "output_root": "",
        "s3_roots": [],
        "shared_storage": [],
        "shared_storage_writable": [],
    }
    return Settings(data_dir=tmp_path, storage_roots=[tmp_path / "media"], **{**values, **kwargs})  # type: ignore[arg-type]


def test_each_tenant_owns_its_folder_under_every_root(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, s3_roots=["s3://media-bucket/ff"])
    media = tmp_path / "media"
    a = namespace_for(settings, "alpha")
    assert [area.uri for area in a.own] == [
        (media / "tenants" / "alpha").as_uri(),
        (media / "outputs" / "tenants" / "alpha").as_uri(),
        "s3://media-bucket/ff/tenants/alpha",
    ]
    assert a.local_roots(write=True) == [media / "tenants" / "alpha", media / "outputs" / "tenants" / "alpha"]
    assert job_output_base(settings, "alpha", "j1") == (media / "outputs/tenants/alpha/j1").as_uri()
    assert namespace_for(settings, "alpha") == a, "a pure function of (settings, tenant)"


@pytest.mark.parametrize("write", [False, True])
def test_a_tenant_cannot_cross_into_another(tmp_path: Path, write: bool) -> None:
    settings = settings_for(tmp_path, s3_roots=["s3://media-bucket"])
    media = tmp_path / "media"
    a = namespace_for(settings, "alpha")
    allowed = [
        (media / "tenants/alpha/in.mp4").as_uri(),
        (media / "tenants/alpha/deep/er/x.mp4").as_uri(),
        (media / "outputs/tenants/alpha/job/hd.mp4").as_uri(),
        "s3://media-bucket/tenants/alpha/x.mp4",
    ]
    refused = [
        (media / "tenants/beta/in.mp4").as_uri(),
        (media / "outputs/tenants/beta/job/hd.mp4").as_uri(),
        (media / "outputs/job/hd.mp4").as_uri(),
        (media / "tenants/alpha-evil/x.mp4").as_uri(),  # a common prefix is not a parent
        (media / "x.mp4").as_uri(),
        "file:///etc/passwd",
        "s3://media-bucket/tenants/beta/x.mp4",
        "s3://media-bucket/x.mp4",
        "s3://other-bucket/tenants/alpha/x.mp4",
        "s3://media-bucket/tenants/alpha/../beta/x.mp4",
        f"file://{media}/tenants/alpha/../beta/x.mp4",
    ]
    for uri in allowed:
        assert a.problem(uri, write=write) is None, uri
    for uri in refused:
        assert a.problem(uri, write=write) is not None, uri
        with pytest.raises(StorageDenied):
            a.check(uri, write=write)


def test_writing_to_an_area_itself_or_to_http_is_refused(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, shared_storage_writable=["s3://drop"])
    a = namespace_for(settings, "alpha")
    media = tmp_path / "media"
    for uri in ((media / "tenants/alpha").as_uri(), media.as_uri(), "s3://drop"):
        assert a.problem(uri, write=True) is not None, uri
    assert "inputs" in (a.problem("https://example.com/out.mp4", write=True) or "")
    assert a.problem("https://example.com/in.mp4", write=False) is None


def test_shared_locations(tmp_path: Path) -> None:
    media = tmp_path / "media"
    settings = settings_for(
        tmp_path,
        shared_storage=[(media / "library").as_uri(), "s3://assets/common/"],
        shared_storage_writable=["s3://exchange/inbox"],
    )
    b = namespace_for(settings, "beta")
    library = (media / "library/film.mp4").as_uri()
    assert b.problem(library, write=False) is None
    assert "only read" in (b.problem(library, write=True) or "")
    assert b.problem("s3://assets/common/logo.png", write=False) is None
    assert b.problem("s3://assets/commonx/logo.png", write=False) is not None
    assert b.problem("s3://exchange/inbox/out.mp4", write=True) is None
    assert media / "library" in b.local_roots(write=False)
    assert media / "library" not in b.local_roots(write=True)


def test_file_locations_outside_every_root_are_never_granted(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, shared_storage=["file:///etc"], output_root="file:///srv/elsewhere")
    a = namespace_for(settings, "alpha")
    assert a.problem("file:///etc/passwd", write=False) is not None
    assert a.problem("file:///srv/elsewhere/tenants/alpha/x.mp4", write=True) is not None


def test_symlinked_spelling_counts_where_it_leads(tmp_path: Path) -> None:
    media = tmp_path / "media"
    (media / "tenants/alpha").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(media, target_is_directory=True)
    a = namespace_for(settings_for(tmp_path), "alpha")
    assert a.problem((tmp_path / "alias/tenants/alpha/in.mp4").as_uri(), write=False) is None
    assert a.problem((tmp_path / "alias/tenants/beta/in.mp4").as_uri(), write=False) is not None


@pytest.mark.parametrize("name", ["", "..", ".hidden", "a/b", "a b", "x" * 65])
def test_unsafe_tenant_names_have_no_namespace(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError):
        namespace_for(settings_for(tmp_path), name)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("s3_roots", ["file:///x"]),
        ("shared_storage", ["https://example.com/x"]),
        ("shared_storage_writable", ["s3://b/../c"]),
        ("shared_storage", ["s3://"]),
    ],
)
def test_bad_location_settings_are_refused(tmp_path: Path, field: str, value: list[str]) -> None:
    with pytest.raises(ValueError):
        settings_for(tmp_path, **{field: value})
