"""GPU tests run only where an NVIDIA GPU is: elsewhere they are deselected (not skipped) at collection."""

from __future__ import annotations

import pytest

from framefleet.media.capabilities import nvidia_present


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu = [item for item in items if item.get_closest_marker("gpu") is not None]
    if not gpu or nvidia_present():
        return
    config.hook.pytest_deselected(items=gpu)
    items[:] = [item for item in items if item.get_closest_marker("gpu") is None]
