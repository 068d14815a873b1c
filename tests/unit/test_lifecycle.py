"""Pure parts of the data lifecycle: the cache key, retention settings and due dates, URI rebasing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from framefleet.core.spec import JobSpec, RetentionSpec
from framefleet.lifecycle.cache import cache_key, rebase
from framefleet.lifecycle.retention import Retention, due_dates, effective, retention_of

BASE = {"input": "file:///media/in.mp4", "outputs": [{"container": "mp4", "video": {"codec": "h264"}}]}


def _key(spec: dict[str, object], fingerprint: str = "sha256:aa") -> str:
    return cache_key(fingerprint, JobSpec.model_validate(spec))


def test_the_cache_key_follows_the_content_and_what_shapes_the_outputs() -> None:
    key = _key(BASE)
    # Where the same bytes come from, and how or when the job runs, do not change the outputs.
    assert _key({**BASE, "input": "s3://b/copy.mp4"}) == key
    assert _key({**BASE, "priority": "high", "metadata": {"a": "b"}, "retention": {"outputs": 3}}) == key
    assert _key({**BASE, "cache": False}) == key
    # Other bytes, or other outputs, do.
    assert _key(BASE, "sha256:bb") != key
    assert _key({**BASE, "outputs": [{"container": "mp4", "video": {"codec": "h264", "height": 240}}]}) != key


def test_retention_settings_are_checked_and_the_spec_overrides_the_tenant_per_field() -> None:
    assert retention_of(None) == Retention()
    assert retention_of({"retention": {"outputs": 30, "inputs": None}}) == Retention(outputs=30)
    for bad in ({"outputs": -1}, {"outputs": True}, {"outputs": "30"}, {"rows": 1}, [30]):
        with pytest.raises(ValueError, match="retention"):
            retention_of({"retention": bad})
    tenant = Retention(inputs=1, outputs=30, work=2)
    assert effective(None, tenant) == tenant
    assert effective(RetentionSpec(outputs=7), tenant) == Retention(inputs=1, outputs=7, work=2)


def test_due_dates_count_from_the_end_of_the_job() -> None:
    ended = datetime(2026, 12, 1, 12, tzinfo=UTC)
    assert due_dates(ended, Retention()) == (None, None)
    assert due_dates(ended, Retention(outputs=0, inputs=2)) == (ended, ended + timedelta(days=2))


def test_rebase_moves_only_uris_under_the_old_folder() -> None:
    details = {"files": [{"uri": "s3://b/t/old/x/1.jpg", "time": 0.5}], "other": "s3://b/t/older/y"}
    assert rebase(details, "s3://b/t/old/", "s3://b/t/new/") == {
        "files": [{"uri": "s3://b/t/new/x/1.jpg", "time": 0.5}],
        "other": "s3://b/t/older/y",
    }
