"""What a written file may say about itself: nothing from the input, only the tags the spec sets.

A phone video carries its GPS position (with altitude), the device's make and model, comments and
arbitrary custom tags; ffmpeg copies all of them, with the chapters, into every output by default and adds
its own version as `encoder` tags. Every output of a job (plain files, copies, HLS playlists and their fMP4
init segments, DASH/CMAF, pictures) therefore drops the input's global, stream and chapter metadata and
writes in bit-exact mode, which leaves the library versions out. The spec's `metadata` is written back.
"""

from __future__ import annotations

from framefleet.core.spec import OutputTag

# -fflags applies to the muxer, -flags:v / -flags:a to each encoder (ignored by stream copies).
STRIP_METADATA = (
    "-map_metadata",
    "-1",
    "-map_chapters",
    "-1",
    "-fflags",
    "+bitexact",
    "-flags:v",
    "+bitexact",
    "-flags:a",
    "+bitexact",
)


def tag_args(tags: dict[OutputTag, str], *, audio: bool) -> list[str]:
    """-metadata options writing the spec's tags: language on the audio stream, the rest on the file."""
    args: list[str] = []
    for tag, value in tags.items():
        if tag == "language":
            if audio:
                args += ["-metadata:s:a", f"language={value}"]
        else:
            args += ["-metadata", f"{tag}={value}"]
    return args
