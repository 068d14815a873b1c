"""The pure parts of storage I/O: share tokens, download paths, storage profiles and their namespace
checks, tus metadata and limits."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from framefleet.config import Settings
from framefleet.storage import join_uri
from framefleet.storage.base import StorageDenied
from framefleet.storage.namespace import job_output_base, namespace_for
from framefleet.storage.profiles import Profile, ProfileStorage, check_profile, parse_profile_uri
from framefleet.storage.sharing import OutputEntry, Share, ShareError, open_share, output_file_uri, sign_share
from framefleet.storage.uploads import max_bytes_of, parse_metadata

SECRET = "newest,older"


def test_share_tokens_round_trip_and_refuse_forgery_expiry_and_other_keys() -> None:
    share = Share("job-1", "hls", 2_000)
    token = sign_share(share, secret_key=SECRET)
    assert open_share(token, secret_key=SECRET, now=1_000) == share
    # A token signed before a rotation still opens while the old passphrase is listed.
    old = sign_share(share, secret_key="older")
    assert open_share(old, secret_key=SECRET, now=1_000) == share
    with pytest.raises(ShareError):
        open_share(old, secret_key="newest", now=1_000)
    with pytest.raises(ShareError, match="expired"):
        open_share(token, secret_key=SECRET, now=2_000)
    payload, mac = token.split(".")
    widened = base64.urlsafe_b64encode(b'{"j":"job-1","n":"other","e":2000}').decode().rstrip("=")
    for bad in (f"{widened}.{mac}", f"{payload}.{mac[:-2]}AA", payload, "", "a.b.c"):
        with pytest.raises(ShareError):
            open_share(bad, secret_key=SECRET, now=1_000)


def test_download_paths_stay_inside_their_output() -> None:
    outputs = [
        OutputEntry("web", "file", "file:///m/t/j/web.mp4"),
        OutputEntry("hls", "manifest", "s3://bkt/t/j/hls/master.m3u8"),
        OutputEntry("thumbs", "thumbnails", "file:///m/t/j/thumbs/"),
    ]
    assert output_file_uri(outputs, "web", None) == "file:///m/t/j/web.mp4"
    assert output_file_uri(outputs, "hls", "720p/seg 1.ts") == "s3://bkt/t/j/hls/720p/seg 1.ts"
    assert output_file_uri(outputs, "thumbs", "a b.jpg") == "file:///m/t/j/thumbs/a%20b.jpg"
    for name, path in [("web", "x"), ("hls", "../x"), ("hls", "a//b"), ("thumbs", None), ("nope", None)]:
        with pytest.raises(LookupError):
            output_file_uri(outputs, name, path)


def _s3_profile(**extra: object) -> Profile:
    return Profile(
        name="media",
        kind="s3",
        bucket="acme",
        prefix="video",
        credentials={"access_key_id": "AK", "secret_access_key": "SK"},
        **extra,  # type: ignore[arg-type]
    )


def test_profile_uris_resolve_to_the_profiles_store() -> None:
    assert parse_profile_uri("storage://media/in/a.mp4") == ("media", "in/a.mp4")
    assert _s3_profile().real_uri("in/a.mp4") == "s3://acme/video/in/a.mp4"
    assert Profile("p", "gcs", "bk").real_uri("x") == "gs://bk/x"
    assert Profile("p", "azure", "ct", "a/b").real_uri("x") == "azure://ct/a/b/x"
    assert Profile("p", "file", "/srv/x", "").real_uri("a b") == "file:///srv/x/a%20b"
    assert join_uri("storage://media/out", "hls", "master.m3u8") == "storage://media/out/hls/master.m3u8"
    for bad in ("storage:///x", "storage://media/a/../b", "s3://media/x"):
        with pytest.raises(StorageDenied):
            parse_profile_uri(bad)


def test_a_profile_backend_signs_with_the_profiles_own_keys() -> None:
    store = ProfileStorage(_s3_profile(endpoint="http://127.0.0.1:9"))
    credentials = store.inner.client._request_signer._credentials  # type: ignore[attr-defined]
    assert credentials.access_key == "AK" and credentials.secret_key == "SK"
    with pytest.raises(StorageDenied):
        store.real("storage://other/x")


@pytest.mark.parametrize(
    ("kind", "bucket", "credentials", "endpoint", "field"),
    [
        ("s3", "b", None, None, "credentials"),
        ("s3", "b", {"access_key_id": "a"}, None, "credentials"),
        (
            "s3",
            "b",
            {"access_key_id": "a", "secret_access_key": "s", "token": "t"},
            None,
            "credentials.token",
        ),
        ("azure", "c", {"account_key": "k"}, None, "credentials"),
        ("gcs", "b", None, None, "credentials"),
        ("gcs", "b", {"service_account_json": "{"}, None, "credentials.service_account_json"),
        ("file", "/elsewhere", None, None, "bucket"),
        ("file", "/srv/profiles/../etc", None, None, "bucket"),
        ("s3", "a/b", {"access_key_id": "a", "secret_access_key": "s"}, None, "bucket"),
        ("nfs", "b", None, None, "kind"),
    ],
)
def test_profiles_without_their_own_access_are_refused(
    kind: str, bucket: str, credentials: dict[str, str] | None, endpoint: str | None, field: str
) -> None:
    problem = check_profile(
        kind=kind, bucket=bucket, prefix="", endpoint=endpoint, credentials=credentials,
        file_roots=[Path("/srv/profiles")],
    )  # fmt: skip
    assert problem is not None and problem[0] == field


def test_valid_profiles_pass() -> None:
    roots = [Path("/srv/profiles")]
    fine = {"prefix": "", "endpoint": None, "credentials": None}
    assert check_profile(kind="file", bucket="/srv/profiles/acme", file_roots=roots, **fine) is None  # type: ignore[arg-type]
    azure = {"connection_string": "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=k"}
    assert (
        check_profile(kind="azure", bucket="c", prefix="p", endpoint=None, credentials=azure, file_roots=[])
        is None
    )
    emulator = {"prefix": "", "endpoint": "http://gcs", "credentials": None}
    assert check_profile(kind="gcs", bucket="b", file_roots=[], **emulator) is None  # type: ignore[arg-type]


def test_namespace_knows_a_tenants_profiles_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    loaded = namespace_for(settings, "acme", {"media": _s3_profile()})
    assert loaded.problem("storage://media/a.mp4", write=True) is None
    assert "no storage profile named 'other'" in (loaded.problem("storage://other/a.mp4", write=False) or "")
    # Not loaded (the API's namespace check; the resolver checks names): nothing is reachable through it.
    unloaded = namespace_for(settings, "acme")
    assert unloaded.problem("storage://media/a.mp4", write=False) is None
    with pytest.raises(StorageDenied):
        unloaded.profile("storage://media/a.mp4")
    default = _s3_profile(default_output=True)
    assert job_output_base(settings, "acme", "j1", default) == "storage://media/j1"
    assert job_output_base(settings, "acme", "j1").endswith("/tenants/acme/j1")


def test_tus_metadata_and_tenant_limits(tmp_path: Path) -> None:
    encoded = base64.b64encode(b"../../etc/my clip.mp4").decode()
    assert parse_metadata(f"filename {encoded},is_confidential").filename == "my clip.mp4"
    assert parse_metadata(None).filename == "upload"
    hidden = base64.b64encode(b".hidden").decode()
    assert parse_metadata(f"filename {hidden}").filename == "upload.hidden"
    with pytest.raises(ValueError):
        parse_metadata("filename !!!")
    settings = Settings(data_dir=tmp_path, upload_max_bytes=100)
    assert max_bytes_of(settings, {"uploads": {"max_bytes": 5}}) == 5
    assert max_bytes_of(settings, {"uploads": {"max_bytes": "5"}}) == 100
    assert max_bytes_of(settings, None) == 100
