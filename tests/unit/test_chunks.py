"""Split-and-stitch planning (pure): the spec's refusals, cut points, chunk specs, the join's checks, scores
and progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from framefleet.core.spec import JobSpec
from framefleet.media.chunks import (
    Chunk,
    FrameIndex,
    check_joined,
    chunk_count,
    chunk_pictures,
    chunk_spec,
    join_scores,
    plan_cuts,
    poster_frames,
    sheet_argv,
    sound_spec,
    thumbnail_times,
    times_in,
    window_args,
)
from framefleet.media.thumbnails import plan_sprites
from framefleet.scheduling.chunks import job_progress
from tests.unit.test_spec import errors


def parallel(outputs: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "input": "file:///media/in.mp4",
        "outputs": outputs or [{"container": "mp4", "video": {"crf": 23}}],
        "parallel": {"chunks": 4, "chunk_seconds": 2},
        **extra,
    }


def test_a_parallel_spec_is_kept_and_defaults_to_auto() -> None:
    job = JobSpec.model_validate({**parallel(), "parallel": {}})
    assert job.parallel is not None and (job.parallel.chunks, job.parallel.chunk_seconds) == ("auto", 60.0)
    # Left out of dumps when absent: existing specs keep their digest.
    assert (
        "parallel"
        not in JobSpec.model_validate(
            {"input": "file:///a.mp4", "outputs": [{"container": "mp4"}]}
        ).model_dump()
    )


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (
            parallel([{"container": "mp4", "video": {"bitrate_kbps": 900}}]),
            "outputs.0.video.bitrate_kbps",
            "two-pass",
        ),
        (parallel([{"container": "webm"}]), "outputs.0.container", "mp4, mov, mkv"),
        (parallel([{"container": "mp4", "video": {"codec": "av1"}}]), "outputs.0.video.codec", "h264, hevc"),
        (parallel([{"container": "mp4", "video": {"fps": 30}}]), "outputs.0.video.fps", "frame rate"),
        (parallel(groups=[{"name": "abr", "type": "hls", "ladder": "mobile"}]), "groups", "groups yet"),
        (parallel(operations={"trim": {"start": 1}}), "operations.trim", "cannot trim"),
        ({**parallel(), "parallel": {"chunks": 0}}, "parallel.chunks", ""),
        ({**parallel(), "parallel": {"chunk_seconds": 0.1}}, "parallel.chunk_seconds", ""),
    ],
)
def test_what_cannot_be_split_is_refused_naming_the_field(
    body: dict[str, Any], field: str, words: str
) -> None:
    found = errors(body)
    assert any(field in loc and words in msg for loc, msg in found), found


def test_chunk_count() -> None:
    assert chunk_count("auto", duration=9.5, chunk_seconds=2, frames=238, limit=64) == 5
    assert chunk_count("auto", duration=10.0, chunk_seconds=2, frames=250, limit=64) == 5
    assert chunk_count(8, duration=10.0, chunk_seconds=2, frames=250, limit=4) == 4
    assert chunk_count(8, duration=0.2, chunk_seconds=2, frames=5, limit=64) == 5


def index(frames: int, keyframes: tuple[int, ...], fps: float = 25.0) -> FrameIndex:
    return FrameIndex(frames, fps, keyframes, 0.0, True)


def test_cuts_take_a_near_keyframe_else_the_exact_frame() -> None:
    # Keyframes every 48 frames: the ideal cuts at 100 and 200 snap to 96 and 192.
    dense = plan_cuts(index(300, tuple(range(0, 300, 48))), 3)
    assert [(c.start_frame, c.frames) for c in dense] == [(0, 96), (96, 96), (192, 108)]
    # One keyframe only: cut on exact frame numbers.
    sparse = plan_cuts(index(300, (0,)), 3)
    assert [(c.start_frame, c.frames) for c in sparse] == [(0, 100), (100, 100), (200, 100)]
    assert sum(c.frames for c in sparse) == 300


def test_cuts_fall_on_the_quality_subsample() -> None:
    cuts = plan_cuts(index(300, (0,)), 3, step=7)
    assert all(c.start_frame % 7 == 0 for c in cuts)
    assert sum(c.frames for c in cuts) == 300


def test_a_chunk_window_seeks_a_quarter_frame_early_and_lasts_its_frames() -> None:
    second = plan_cuts(index(75, (0,)), 3)[1]
    assert window_args(second) == ["-ss", "0.990000", "-t", "1.000000"]
    assert window_args(plan_cuts(index(75, (0,)), 3)[0]) == ["-t", "1.000000"]


def test_chunks_encode_no_sound_and_the_sound_pass_no_picture() -> None:
    job = JobSpec.model_validate(
        parallel(
            [{"name": "a", "container": "mp4", "video": {"crf": 23}, "metadata": {"title": "T"}}],
            quality={"metrics": ["vmaf"]},
        )
    )
    chunk = chunk_spec(job)
    assert chunk.parallel is None and chunk.operations is not None and chunk.operations.strip_audio
    assert chunk.outputs[0].audio.codec is not None and chunk.outputs[0].audio.codec.value == "none"
    assert chunk.outputs[0].video.crf == 23 and chunk.quality == job.quality
    sound = sound_spec(job)
    assert sound.outputs[0].video.codec is not None and sound.outputs[0].video.codec.value == "none"
    assert sound.outputs[0].metadata == {"title": "T"} and sound.quality is None


def test_the_join_check_finds_gaps_duplicates_and_missing_frames() -> None:
    good = [i * 512 for i in range(75)]
    assert check_joined(good, frames=75, frame_ticks=512, fps=25) is None
    assert "74 frames" in (check_joined(good[:-1], frames=75, frame_ticks=512, fps=25) or "")
    gap = good[:25] + [p + 512 for p in good[25:74]]
    assert "a gap" in (check_joined(gap, frames=74, frame_ticks=512, fps=25) or "")
    dup = [*good[:25], good[24], *good[25:74]]
    assert "a duplicate" in (check_joined(dup, frames=75, frame_ticks=512, fps=25) or "")


def test_chunk_scores_are_renumbered_into_the_whole_output() -> None:
    parts = [(3, [{"frame": 0, "vmaf": 90.0}, {"frame": 1, "vmaf": 91.0}]), (0, [{"frame": 0, "vmaf": 80.0}])]
    assert [(r["frame"], r["vmaf"]) for r in join_scores(parts)] == [(0, 80.0), (3, 90.0), (4, 91.0)]


def test_progress_sums_chunks_by_frames_then_the_join() -> None:
    assert job_progress([("encode", 100, 100.0), ("encode", 300, 0.0), ("join", 400, 0.0)]) == 23.75
    assert job_progress([("encode", 100, 100.0), ("encode", 300, 100.0), ("join", 400, 100.0)]) == 100.0


def test_thumbnails_go_to_the_chunk_holding_their_frame() -> None:
    job = JobSpec.model_validate(
        parallel(
            thumbnails=[
                {"name": "at", "times": [0.0, 0.99, 1.0, 1.01, 2.5, 9.0]},
                {"name": "ev", "every_seconds": 1},
            ]
        )
    )
    times = thumbnail_times(job, frames=75, fps=25)
    # 9.0 is past the end; 0.99 and 1.0 both show frame 25: one picture.
    assert times == {"at": [0.0, 0.99, 1.01, 2.5], "ev": [0.0, 1.0, 2.0]}
    first, second, third = plan_cuts(index(75, (0,)), 3)
    # A chunk's times count from its seek, a quarter frame (0.01 s) before its first frame; 0.99 s shows
    # frame 25, the second chunk's first.
    assert times_in(first, times["at"], 25) == [0.0]
    assert times_in(second, times["at"], 25) == [0.0, 0.02]
    assert times_in(third, times["at"], 25) == [0.51]
    spec = chunk_spec(job, second, times=times, fps=25)
    assert [(t.name, t.times, t.every_seconds) for t in spec.thumbnails] == [
        ("at", [0.0, 0.02], None),
        ("ev", [0.01], None),
    ]
    assert sound_spec(job).thumbnails == []


def test_a_cut_inside_the_posters_look_moves_before_it() -> None:
    whole = (37, 67)  # the automatic poster compares frames 37..66
    cuts = plan_cuts(index(100, (0,)), 2, whole=whole)
    assert [(c.start_frame, c.frames) for c in cuts] == [(0, 37), (37, 63)]
    assert [c.start_frame for c in plan_cuts(index(100, (0,)), 2, step=4, whole=whole)] == [0, 36]
    assert [c.start_frame for c in plan_cuts(index(100, (0,)), 2, whole=(10, 40))] == [0, 50]  # outside


def test_sprites_and_the_poster_go_to_the_chunks_holding_their_frames() -> None:
    spec = JobSpec.model_validate(
        parallel(
            sprites=[{"name": "hover", "every_seconds": 1, "columns": 2, "rows": 2, "width": 80}],
            poster={"format": "png"},
        )
    )
    # 100 frames at 25 fps: the poster's look is frames 10..39 (10 % of 4 s is 0.4 s).
    poster = poster_frames(spec, duration=4.0, frames=100, fps=25.0)
    assert poster == (10, 40)
    assert poster_frames(spec.model_copy(update={"poster": None}), duration=4.0, frames=100, fps=25.0) is None
    times = thumbnail_times(spec, frames=100, fps=25.0)
    assert times["hover"] == [0.0, 1.0, 2.0, 3.0]
    first, second = Chunk(0, 0, 50, 0.0, 2.0), Chunk(1, 50, 50, 49.75 / 25, 2.0)
    plans = {
        c.index: chunk_pictures(
            spec, c, times=times, poster=poster, fps=25.0, folder=Path("/w"), src=(320, 240)
        )
        for c in (first, second)
    }
    assert [(p.kind, p.name) for p in plans[0]] == [("tiles", "hover"), ("poster", "poster")]
    assert [(p.kind, p.name) for p in plans[1]] == [("tiles", "hover")]
    tiles, picked = plans[0]
    assert tiles.times == [0.0, 1.0] and plans[1][0].times == [0.01, 1.01]  # a quarter frame after the seek
    assert tiles.pattern == "hover.nut" and "rawvideo" in tiles.output_args
    assert tiles.filters[-1] == "format=yuvj420p" and not any("tile=" in f for f in tiles.filters)
    assert (
        picked.filters[0] == "select=expr=gte(t\\,0.39)"
    )  # a quarter frame before frame 10, on the first chunk's time
    # Chunks see neither: their spec keeps the outputs and thumbnails only.
    assert not chunk_spec(spec, first).sprites and chunk_spec(spec, first).poster is None


def test_the_join_tiles_the_staged_tiles_as_the_unsplit_graph_does() -> None:
    spec = JobSpec.model_validate(
        parallel(sprites=[{"name": "hover", "every_seconds": 1, "columns": 3, "rows": 2, "format": "webp"}])
    )
    plan = plan_sprites(spec.sprites[0], Path("/w/hover"), 10.0, (320, 240))
    assert plan.filters[-2:] == ["format=yuv420p", "tile=3x2"]  # the unsplit graph's pixels, set
    argv = sheet_argv(Path("/w/list.ffconcat"), plan)
    assert argv[argv.index("-vf") + 1] == "setparams=range=tv,tile=3x2"
    assert argv[-1] == "/w/hover/hover_%03d.webp" and argv[argv.index("-f") + 1] == "concat"
