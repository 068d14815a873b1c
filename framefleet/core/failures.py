"""Failure classes: what went wrong, in words a user and the retry policy both understand."""

from __future__ import annotations

from enum import StrEnum


class FailureClass(StrEnum):
    input_invalid = "input_invalid"
    spec_unsupported = "spec_unsupported"
    encoder_failed = "encoder_failed"
    hardware_unavailable = "hardware_unavailable"
    storage_unavailable = "storage_unavailable"
    storage_denied = "storage_denied"
    timeout = "timeout"
    worker_lost = "worker_lost"
    resource_exhausted = "resource_exhausted"
    canceled = "canceled"
    internal = "internal"


RETRYABLE: frozenset[FailureClass] = frozenset(
    {
        FailureClass.hardware_unavailable,
        FailureClass.storage_unavailable,
        FailureClass.timeout,
        FailureClass.worker_lost,
        FailureClass.resource_exhausted,
        FailureClass.internal,
    }
)


class JobFailure(Exception):
    """Raised inside the worker pipeline to end an attempt with a known failure class."""

    def __init__(self, failure_class: FailureClass, message: str) -> None:
        super().__init__(message)
        self.failure_class = failure_class
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.failure_class in RETRYABLE


_INPUT_MARKERS = (
    "invalid data found when processing input",
    "moov atom not found",
    "end of file",
    "could not find codec parameters",
    "does not contain any stream",
    "matches no streams",
    "error while decoding",
    "invalid nal unit",
)
_RESOURCE_MARKERS = ("no space left on device", "cannot allocate memory", "out of memory")
_UNSUPPORTED_MARKERS = (
    "could not write header",
    "not currently supported in container",
    "codec not currently supported",
    "unknown encoder",
    "incompatible pixel format",
)


def classify_ffmpeg_failure(returncode: int, stderr_tail: str) -> FailureClass:
    """Map an ffmpeg exit status and the end of its stderr to a failure class."""
    text = stderr_tail.lower()
    if any(marker in text for marker in _RESOURCE_MARKERS):
        return FailureClass.resource_exhausted
    if returncode < 0 and returncode in (-9, -15):
        return FailureClass.worker_lost
    if any(marker in text for marker in _UNSUPPORTED_MARKERS):
        return FailureClass.spec_unsupported
    if any(marker in text for marker in _INPUT_MARKERS):
        return FailureClass.input_invalid
    return FailureClass.encoder_failed
