"""The cluster, once per module: built before the first test, taken down after the last (and at exit or on
SIGTERM if the run is cut short). Not skipped anywhere: without root or `ip netns` the fixture fails, saying
which is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster import harness
from tests.conftest import make_clip


@pytest.fixture(scope="module")
def cluster() -> Iterator[harness.Cluster]:
    try:
        with harness.running() as running:
            yield running
    except RuntimeError as exc:  # set-up failed: say why, as a failure
        pytest.fail(f"cluster harness: {exc}")


@pytest.fixture(scope="module")
def slow_clip(cluster: harness.Cluster) -> Path:
    """A clip whose encode outlasts the lease's fence period (TTL - interval): a cut lands mid-encode."""
    from framefleet.media.ffmpeg import ffmpeg_path

    seconds = 120 if harness.LONG else 40
    return make_clip(ffmpeg_path(), cluster.media / "inputs" / "slow.mp4", seconds=seconds, size="320x240")


@pytest.fixture(scope="module")
def tiny_clip(cluster: harness.Cluster) -> Path:
    from framefleet.media.ffmpeg import ffmpeg_path

    path = cluster.media / "inputs" / "tiny.mp4"
    return make_clip(ffmpeg_path(), path, seconds=0.5, size="160x120", audio=False)


@pytest.fixture(scope="module")
def short_clip(cluster: harness.Cluster) -> Path:
    """About a second of HEVC encoding: it ends inside a database outage that starts as it begins."""
    from framefleet.media.ffmpeg import ffmpeg_path

    return make_clip(ffmpeg_path(), cluster.media / "inputs" / "short.mp4", seconds=1.5, size="320x240")
