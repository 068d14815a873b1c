"""examples/: every job spec is accepted as it is, from the root of a stack made by `framefleet up`.

Each example was also run to success against a real stack; here each one is read the way `framefleet submit`
reads it, validated, and checked against the demo tenant's storage area, the way the API checks it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from framefleet.cli.demo import CLIP_NAME
from framefleet.cli.jobs import local_input_uri, read_spec
from framefleet.cli.supervisor import DEMO_TENANT
from framefleet.core.spec import JobSpec
from framefleet.jobs.locations import location_problem
from framefleet.storage.namespace import namespace_for
from tests.conftest import fresh_stack_settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SPECS = sorted(EXAMPLES.glob("*.json"))


@pytest.fixture()
def repo_root(tmp_path: Path) -> Path:
    """A working directory laid out as `framefleet up` leaves it: the sample clip in the demo folder."""
    clip = tmp_path / ".data" / "media" / "tenants" / DEMO_TENANT / CLIP_NAME
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"\0")
    return tmp_path


def test_there_is_an_example_per_feature() -> None:
    assert len(SPECS) >= 9


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_example_is_accepted_as_it_is(path: Path, repo_root: Path) -> None:
    raw = read_spec(str(path), cwd=repo_root)
    assert raw["input"] == (repo_root / ".data/media/tenants/demo" / CLIP_NAME).as_uri()
    spec = JobSpec.model_validate(raw)
    settings = fresh_stack_settings(repo_root / ".data")
    assert location_problem(spec, namespace_for(settings, DEMO_TENANT)) is None


def test_examples_readme_lists_every_example() -> None:
    listed = set(re.findall(r"`([\w-]+\.json)`", (EXAMPLES / "README.md").read_text()))
    assert listed == {p.name for p in SPECS}


def test_local_input_paths_become_file_uris(tmp_path: Path) -> None:
    (tmp_path / "in.mp4").write_bytes(b"\0")
    assert local_input_uri("in.mp4", cwd=tmp_path) == (tmp_path / "in.mp4").as_uri()
    # URIs go to the API as they are, whatever they name: it is the one that judges them.
    for uri in ("file:///srv/x.mp4", "s3://b/k.mp4", "https://example.org/a.mp4", "file:relative"):
        assert local_input_uri(uri, cwd=tmp_path) == uri
    with pytest.raises(ValueError, match="is not a URI, and no file"):
        local_input_uri("missing.mp4", cwd=tmp_path)
