"""Tests that kill things: workers, Redis, the API, ffmpeg; disks that fill up; cancel in every state."""
