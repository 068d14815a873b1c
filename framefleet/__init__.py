"""FrameFleet: a self-hosted, distributed video transcoding service."""

__version__ = "0.1.0"
