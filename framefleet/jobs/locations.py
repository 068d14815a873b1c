"""Every storage URI a spec names, with its field and whether the job reads or writes it (pure).

The API checks each against the submitting tenant's namespace, so a job that could never read its input or
write its outputs is refused at submission (422 naming the field) instead of failing after a whole encode.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from framefleet.core.spec import GroupSpec, JobSpec, OutputSpec, SpriteSpec, ThumbnailSpec
from framefleet.storage.namespace import Namespace


def spec_locations(spec: JobSpec) -> Iterator[tuple[str, str, bool]]:
    """(field, uri, write) for every URI in `spec`: its input and assets are read, destinations written."""
    if isinstance(spec.input, str):  # a parent's output (InputRef) lies where the parent wrote it
        yield "input", spec.input, False
    if spec.operations is not None:
        if spec.operations.watermark is not None:
            yield "operations.watermark.uri", spec.operations.watermark.uri, False
        if spec.operations.subtitles is not None:
            yield "operations.subtitles.uri", spec.operations.subtitles.uri, False
    named: list[tuple[str, Sequence[OutputSpec | GroupSpec | ThumbnailSpec | SpriteSpec]]] = [
        ("outputs", spec.outputs),
        ("groups", spec.groups),
        ("thumbnails", spec.thumbnails),
        ("sprites", spec.sprites),
    ]
    for field, items in named:
        for index, item in enumerate(items):
            if item.destination is not None:
                yield f"{field}.{index}.destination", item.destination, True
    if spec.poster is not None and spec.poster.destination is not None:
        yield "poster.destination", spec.poster.destination, True


def location_problem(spec: JobSpec, namespace: Namespace) -> tuple[str, str] | None:
    """(field, reason) for the first URI of `spec` the tenant may not use; None when all are allowed."""
    for field, uri, write in spec_locations(spec):
        problem = namespace.problem(uri, write=write)
        if problem is not None:
            return field, problem
    return None
