"""Output presets: named output settings an output in a job spec may start from.

`{"preset": "web-1080p", "name": "hd", "video": {"crf": 20}}` is the preset's output with the given fields
laid over it (objects such as `video` merged field by field). Expansion happens at submission and the
stored spec is the expanded one, so changing or deleting a preset later never alters a submitted job.
The built-in presets ship with the product; a tenant adds its own under other names (`/v1/presets`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.orm import Session

from framefleet.core.spec import OutputSpec
from framefleet.db.models import OutputPreset, utcnow

MAX_PRESETS_PER_TENANT = 200
# What a preset cannot fix: the output's name and where it goes belong to each job.
PER_JOB_FIELDS = frozenset({"name", "destination", "overwrite", "preset"})

# Each within what the embedded ffmpeg builds can write (core/encoding.py); docs/workflows.md lists them.
BUILTIN: dict[str, dict[str, Any]] = {
    "web-1080p": {
        "description": "MP4, H.264 high profile up to 1920x1080 (aspect kept), CRF 23 capped at 6 Mb/s; "
        "AAC stereo 128 kb/s",
        "output": {
            "container": "mp4",
            "video": {
                "codec": "h264",
                "width": 1920,
                "height": 1080,
                "fit": "fit",
                "crf": 23,
                "maxrate_kbps": 6000,
                "bufsize_kbps": 12000,
                "preset": "medium",
                "profile": "high",
                "pix_fmt": "yuv420p",
            },
            "audio": {"codec": "aac", "bitrate_kbps": 128, "channels": 2},
        },
    },
    "web-720p": {
        "description": "MP4, H.264 high profile up to 1280x720, CRF 23 capped at 3.5 Mb/s; "
        "AAC stereo 128 kb/s",
        "output": {
            "container": "mp4",
            "video": {
                "codec": "h264",
                "width": 1280,
                "height": 720,
                "fit": "fit",
                "crf": 23,
                "maxrate_kbps": 3500,
                "bufsize_kbps": 7000,
                "preset": "medium",
                "profile": "high",
                "pix_fmt": "yuv420p",
            },
            "audio": {"codec": "aac", "bitrate_kbps": 128, "channels": 2},
        },
    },
    "mobile-480p": {
        "description": "MP4, H.264 main profile up to 854x480, CRF 26 capped at 1.2 Mb/s; AAC stereo 96 kb/s",
        "output": {
            "container": "mp4",
            "video": {
                "codec": "h264",
                "width": 854,
                "height": 480,
                "fit": "fit",
                "crf": 26,
                "maxrate_kbps": 1200,
                "bufsize_kbps": 2400,
                "preset": "fast",
                "profile": "main",
                "pix_fmt": "yuv420p",
            },
            "audio": {"codec": "aac", "bitrate_kbps": 96, "channels": 2},
        },
    },
    # ProRes is not among the codecs the product writes: the archive preset is the nearest visually
    # lossless mezzanine it can make, 10-bit HEVC at CRF 16 with lossless FLAC sound in Matroska.
    "archive-hevc10": {
        "description": "MKV, HEVC main10 10-bit at CRF 16 (slow preset), size kept; FLAC sound (lossless)",
        "output": {
            "container": "mkv",
            "video": {"codec": "hevc", "crf": 16, "preset": "slow", "pix_fmt": "yuv420p10le"},
            "audio": {"codec": "flac"},
        },
    },
}


class PresetError(ValueError):
    """A preset a spec or request cannot use; `field` is the dotted field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NotFound(Exception):
    pass


class Exists(Exception):
    pass


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` laid on `base`: objects merged field by field, anything else replaced (pure)."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = merge(below, value)
        else:
            merged[key] = value
    return merged


def referenced(document: Mapping[str, Any]) -> set[str]:
    """The preset names a raw spec's outputs refer to."""
    outputs = document.get("outputs")
    if not isinstance(outputs, list):
        return set()
    return {o["preset"] for o in outputs if isinstance(o, Mapping) and isinstance(o.get("preset"), str)}


def expand(document: Mapping[str, Any], lookup: Callable[[str], Mapping[str, Any] | None]) -> dict[str, Any]:
    """The raw spec with each output naming a preset replaced by the preset's output plus its own fields.

    `lookup` gives a tenant preset's output by name (None when there is none); built-in names come first.
    PresetError names `outputs.N.preset` for a name that is neither.
    """
    outputs = document.get("outputs")
    if not isinstance(outputs, list) or not any(isinstance(o, Mapping) and "preset" in o for o in outputs):
        return dict(document)
    expanded: list[Any] = []
    for index, output in enumerate(outputs):
        if not isinstance(output, Mapping) or "preset" not in output:
            expanded.append(output)
            continue
        name = output["preset"]
        field = f"outputs.{index}.preset"
        if not isinstance(name, str):
            raise PresetError(field, "a preset is named by a string")
        base = BUILTIN[name]["output"] if name in BUILTIN else lookup(name)
        if base is None:
            raise PresetError(field, f"no preset {name!r} (built-in: {', '.join(BUILTIN)})")
        expanded.append(merge(base, {k: v for k, v in output.items() if k != "preset"}))
    return {**document, "outputs": expanded}


def check_output(output: Mapping[str, Any]) -> dict[str, Any]:
    """A preset's output as given (PresetError naming `output.<field>` when it is not a valid output)."""
    fixed = sorted(PER_JOB_FIELDS & set(output))
    if fixed:
        raise PresetError(f"output.{fixed[0]}", "is set by each job, not by a preset")
    try:
        OutputSpec.model_validate(dict(output))
    except ValidationError as exc:
        error = exc.errors()[0]
        parts = [str(p) for p in error["loc"]]
        sub = (error.get("ctx") or {}).get("field")
        if sub:
            parts.append(str(sub))
        raise PresetError(".".join(["output", *parts]), error["msg"]) from None
    return dict(output)


def view(preset: OutputPreset) -> dict[str, Any]:
    return {
        "name": preset.name,
        "builtin": False,
        "description": preset.description,
        "output": preset.output,
        "created_at": preset.created_at,
        "updated_at": preset.updated_at,
    }


def builtin_view(name: str) -> dict[str, Any]:
    entry = BUILTIN[name]
    return {"name": name, "builtin": True, "description": entry["description"], "output": entry["output"]}


def outputs_of(session: Session, *, tenant_id: int, names: set[str]) -> dict[str, dict[str, Any]]:
    """The tenant presets among `names`, by name (one query)."""
    if not names:
        return {}
    rows = session.execute(
        sa.select(OutputPreset.name, OutputPreset.output).where(
            OutputPreset.tenant_id == tenant_id, OutputPreset.name.in_(sorted(names))
        )
    ).all()
    return {name: output for name, output in rows}


def list_presets(session: Session, *, tenant_id: int) -> list[dict[str, Any]]:
    """Built-in presets, then the tenant's by name."""
    rows = session.scalars(
        sa.select(OutputPreset).where(OutputPreset.tenant_id == tenant_id).order_by(OutputPreset.name)
    )
    return [builtin_view(name) for name in BUILTIN] + [view(row) for row in rows]


def _find(session: Session, tenant_id: int, name: str) -> OutputPreset | None:
    return session.scalar(
        sa.select(OutputPreset).where(OutputPreset.tenant_id == tenant_id, OutputPreset.name == name)
    )


def get_preset(session: Session, *, tenant_id: int, name: str) -> dict[str, Any]:
    if name in BUILTIN:
        return builtin_view(name)
    row = _find(session, tenant_id, name)
    if row is None:
        raise NotFound(f"no preset {name!r}")
    return view(row)


def create_preset(
    session: Session, *, tenant_id: int, name: str, description: str | None, output: Mapping[str, Any]
) -> OutputPreset:
    """A new tenant preset (Exists when the name is built in or taken)."""
    if name in BUILTIN:
        raise Exists(f"{name!r} is a built-in preset")
    checked = check_output(output)
    count = session.scalar(
        sa.select(sa.func.count()).select_from(OutputPreset).where(OutputPreset.tenant_id == tenant_id)
    )
    if (count or 0) >= MAX_PRESETS_PER_TENANT:
        raise PresetError("name", f"a tenant has at most {MAX_PRESETS_PER_TENANT} presets")
    if _find(session, tenant_id, name) is not None:
        raise Exists(f"preset {name!r} exists")
    row = OutputPreset(tenant_id=tenant_id, name=name, description=description, output=checked)
    session.add(row)
    session.commit()
    return row


def update_preset(
    session: Session,
    *,
    tenant_id: int,
    name: str,
    description: str | None,
    output: Mapping[str, Any] | None,
) -> OutputPreset:
    """Replace a tenant preset's output and/or description (jobs already submitted keep their spec)."""
    if name in BUILTIN:
        raise Exists(f"{name!r} is a built-in preset and cannot be changed")
    row = _find(session, tenant_id, name)
    if row is None:
        raise NotFound(f"no preset {name!r}")
    if output is not None:
        row.output = check_output(output)
    if description is not None:
        row.description = description
    row.updated_at = utcnow()
    session.commit()
    return row


def delete_preset(session: Session, *, tenant_id: int, name: str) -> None:
    if name in BUILTIN:
        raise Exists(f"{name!r} is a built-in preset and cannot be deleted")
    row = _find(session, tenant_id, name)
    if row is None:
        raise NotFound(f"no preset {name!r}")
    session.delete(row)
    session.commit()
