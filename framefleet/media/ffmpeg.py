"""Where the ffmpeg binary is: FRAMEFLEET_FFMPEG_PATH, else the static build shipped by imageio-ffmpeg."""

from __future__ import annotations

from functools import lru_cache


@lru_cache
def ffmpeg_path() -> str:
    from framefleet.config import get_settings

    configured = get_settings().ffmpeg_path
    if configured:
        return configured
    import imageio_ffmpeg

    return str(imageio_ffmpeg.get_ffmpeg_exe())
