"""Failure classes: what went wrong, in words a user and the retry policy both understand.

Classification is a pure function of (exit status, the end of ffmpeg's stderr, the exception raised), so
it is unit-tested on error output captured from real ffmpeg failures (tests/unit/data/ffmpeg_failures).
"""

from __future__ import annotations

import errno
import signal
from enum import StrEnum


class FailureClass(StrEnum):
    input_invalid = "input_invalid"
    spec_unsupported = "spec_unsupported"
    encoder_failed = "encoder_failed"
    hardware_unavailable = "hardware_unavailable"
    storage_unavailable = "storage_unavailable"
    storage_denied = "storage_denied"
    timeout = "timeout"
    stalled = "stalled"
    worker_lost = "worker_lost"
    resource_exhausted = "resource_exhausted"
    canceled = "canceled"
    internal = "internal"


# Retried with backoff: the same attempt can succeed elsewhere or later. `timeout` is not here: a job that
# ran past its limit would run past it again. `stalled` is: an encoder that stopped making progress (a hung
# device, a stuck read) usually runs on the next attempt.
RETRYABLE: frozenset[FailureClass] = frozenset(
    {
        FailureClass.hardware_unavailable,
        FailureClass.storage_unavailable,
        FailureClass.stalled,
        FailureClass.worker_lost,
        FailureClass.resource_exhausted,
        FailureClass.internal,
    }
)


def is_retryable(failure_class: FailureClass) -> bool:
    """Whether a failure of this class is worth another attempt."""
    return failure_class in RETRYABLE


class JobFailure(Exception):
    """Raised inside the worker pipeline to end an attempt with a known failure class."""

    def __init__(self, failure_class: FailureClass, message: str) -> None:
        super().__init__(message)
        self.failure_class = failure_class
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.failure_class in RETRYABLE


# Markers are matched against the lower-cased stderr tail, in the order of the checks below.
_RESOURCE_MARKERS = (
    "no space left on device",
    "disk quota exceeded",
    "cannot allocate memory",
    "out of memory",
    "malloc of size",
)
_HARDWARE_MARKERS = (
    "cannot load libcuda",
    "cannot load libnvidia-encode",
    "could not dynamically load cuda",
    "no nvenc capable devices found",
    "openencodesessionex failed",
    "no capable devices found",
    "cuinit",
    "cuda_error",
    "device creation failed",
    "no device available for decoder",
    "hardware device setup failed",
    "hwaccel initialisation returned error",
    "no va display found",
    "failed to initialise vaapi connection",
    "error creating a mfx session",
    "error initializing an internal mfx session",
    "error initializing the mfx video core",
)
_UNSUPPORTED_MARKERS = (
    "could not write header",
    "not currently supported in container",
    "codec not currently supported",
    "unknown encoder",
    "only supported in",
    "incompatible pixel format",
)
_INPUT_MARKERS = (
    "invalid data found when processing input",
    "moov atom not found",
    "error opening input",
    "end of file",
    "could not find codec parameters",
    "does not contain any stream",
    "matches no streams",
    "error while decoding",
    "invalid nal unit",
)
# Signals that mean "this process was stopped from outside" rather than "the encoder crashed".
_STOP_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
# What ffmpeg exits with after catching a termination signal (it prints nothing at -loglevel error).
FFMPEG_SIGNALLED_EXIT = 255
_RESOURCE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENOMEM})


def classify_failure(
    returncode: int | None, stderr_tail: str = "", exc: BaseException | None = None
) -> FailureClass:
    """The failure class of an attempt from ffmpeg's exit status, its stderr tail and/or an exception."""
    if exc is not None:
        from_exception = _classify_exception(exc)
        if from_exception is not None:
            return from_exception
    text = stderr_tail.lower()
    if any(marker in text for marker in _RESOURCE_MARKERS):
        return FailureClass.resource_exhausted
    if any(marker in text for marker in _HARDWARE_MARKERS):
        return FailureClass.hardware_unavailable
    if returncode is not None and returncode < 0:
        # Killed from outside (the OOM killer sends SIGKILL) vs crashed on its own (SIGSEGV, SIGABRT).
        stopped = -returncode in {int(s) for s in _STOP_SIGNALS}
        return FailureClass.worker_lost if stopped else FailureClass.encoder_failed
    if returncode == FFMPEG_SIGNALLED_EXIT and not text.strip():
        # ffmpeg catches SIGTERM/SIGINT, stops quietly and exits 255: stopped from outside, not failed.
        return FailureClass.worker_lost
    if any(marker in text for marker in _UNSUPPORTED_MARKERS):
        return FailureClass.spec_unsupported
    if any(marker in text for marker in _INPUT_MARKERS):
        return FailureClass.input_invalid
    if returncode is None and exc is not None:
        return FailureClass.internal
    return FailureClass.encoder_failed


def _classify_exception(exc: BaseException) -> FailureClass | None:
    failure_class = getattr(exc, "failure_class", None)
    if isinstance(failure_class, FailureClass):
        return failure_class  # JobFailure, StorageError: they already know
    if isinstance(exc, MemoryError):
        return FailureClass.resource_exhausted
    if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
        return FailureClass.resource_exhausted
    return None


# How a filesystem error on a storage path ends a job. Permanent errors say something about the path itself
# (it exists and is not ours, it is read-only, a file stands where a folder must be): another attempt would
# meet the same path and fail the same way after a whole encode, so they are not retried.
_DENIED_ERRNOS = frozenset(
    {
        errno.EEXIST,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ENAMETOOLONG,
        errno.ELOOP,
        errno.ENOTEMPTY,
        errno.EXDEV,
    }
)


def classify_os_error(code: int | None) -> FailureClass:
    """The failure class of an OSError's errno met while reading or writing storage.

    Permanent refusals are `storage_denied`, a full disk or quota is `resource_exhausted`, a missing path is
    `input_invalid`; anything else (EIO, ETIMEDOUT, ESTALE, a dropped network mount) may pass and is
    `storage_unavailable`, which is retried.
    """
    if code in _DENIED_ERRNOS:
        return FailureClass.storage_denied
    if code in _RESOURCE_ERRNOS:
        return FailureClass.resource_exhausted
    if code == errno.ENOENT:
        return FailureClass.input_invalid
    return FailureClass.storage_unavailable


def classify_ffmpeg_failure(returncode: int, stderr_tail: str) -> FailureClass:
    """Map an ffmpeg exit status and the end of its stderr to a failure class."""
    return classify_failure(returncode, stderr_tail)


def describe_exit(returncode: int) -> str:
    """'exit status 1' or 'killed by SIGKILL': how a process ended, in words."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"
