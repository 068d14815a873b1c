"""OpenTelemetry tracing, off unless the standard `OTEL_*` variables ask for an OTLP exporter.

One job is one trace: the HTTP request, the intake, the publish to the broker (W3C trace context in the
Celery message headers), the worker's claim, fetch, probe, each ffmpeg run, publish and the recording of the
ending, and every webhook delivery about the job (parented by the context the job row keeps, because a
delivery is sent long after, by another process, from a database row).

When tracing is off the SDK is never imported, no provider is installed and `span()` is a null context:
the job path pays one boolean test per span. Traces are exported with OTLP over HTTP/protobuf, configured
entirely by the SDK's own variables (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, ...).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

__all__ = ["Span", "SpanKind"]

TRACER_NAME = "framefleet"
TRACEPARENT = "traceparent"
_propagator = TraceContextTextMapPropagator()
_enabled = False
# The tracer, made once by configure: the SDK's get_tracer builds two scope objects and rewrites the
# process's warning filters on every call, which cost about a third of a span's creation.
_tracer: trace.Tracer = trace.NoOpTracer()


def wanted(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for tracing (pure): an OTLP endpoint is set, or OTEL_TRACES_EXPORTER
    says `otlp`; never with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def enabled() -> bool:
    """True once this process installed the SDK (configure)."""
    return _enabled


def configure(service: str) -> bool:
    """Install the SDK with a batching OTLP exporter if the environment asks for tracing; True when on.

    `service` names the process (`framefleet-<service>`) unless OTEL_SERVICE_NAME does. Call once per process,
    before forking: the SDK's batch processor restarts its export thread in forked children.
    """
    global _enabled, _tracer
    if _enabled or not wanted():
        return _enabled
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    if exporter not in ("otlp", "otlp_proto_http"):
        # Only OTLP over HTTP is shipped; another exporter is a configuration this build cannot honour.
        raise ValueError(f"OTEL_TRACES_EXPORTER={exporter!r}: only 'otlp' (HTTP/protobuf) or 'none' works")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {"service.name": f"framefleet-{service}"}
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer(TRACER_NAME)
    _enabled = True
    return True


def flush(timeout_millis: int = 5000) -> None:
    """Export the spans still buffered (a process about to exit without its atexit handlers)."""
    if _enabled:
        provider = trace.get_tracer_provider()
        force_flush = getattr(provider, "force_flush", None)
        if force_flush is not None:
            force_flush(timeout_millis)


def context_of(traceparent: str | None) -> otel_context.Context | None:
    """The context a stored or received `traceparent` stands for; None for none or a malformed one."""
    if not traceparent:
        return None
    ctx = _propagator.extract({TRACEPARENT: traceparent})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def extract(carrier: Mapping[str, str]) -> otel_context.Context | None:
    """The context carried in headers (W3C `traceparent`); None when there is none."""
    if not _enabled:
        return None
    return context_of(carrier.get(TRACEPARENT))


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: otel_context.Context | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[Span | None]:
    """A span made current for the block (None when tracing is off). `parent`: a context to continue
    instead of the current one. An exception leaving the block is recorded and marks the span an error."""
    if not _enabled:
        yield None
        return
    if _dropped(parent):
        # Under a trace the sampler dropped: no span (a parent-based sampler would drop it too, after paying
        # for its creation), but the parent's context stays current, so what is published still carries it.
        token = otel_context.attach(parent) if parent is not None else None
        try:
            yield None
        finally:
            if token is not None:
                otel_context.detach(token)
        return
    # The SDK copies the attributes into the span's own bounded mapping: no copy of ours.
    with _tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes) as current:
        yield current


def start(
    name: str, *, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None
) -> Span | None:
    """A span, child of the current one, that the caller ends (one that outlives a block); None when off."""
    if not _enabled or _dropped(None):
        return None
    return _tracer.start_span(name, kind=kind, attributes=attributes)


def _dropped(parent: otel_context.Context | None) -> bool:
    """Whether the parent (default: the current span) belongs to a trace the sampler did not record."""
    context = trace.get_current_span(parent).get_span_context()
    return context.is_valid and not context.trace_flags.sampled


def traceparent(of: Span | None = None) -> str | None:
    """The W3C `traceparent` of a span (default: the current one); None when off or outside any span."""
    if not _enabled:
        return None
    context = (of if of is not None else trace.get_current_span()).get_span_context()
    if not context.is_valid:
        return None
    # The W3C header written directly (version 00): the propagator would build a context and a carrier for it.
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"


def inject(carrier: dict[str, str]) -> dict[str, str]:
    """Add the current context's `traceparent` to outgoing headers (nothing when off or outside a span)."""
    if _enabled:
        _propagator.inject(carrier)
    return carrier


def in_span() -> bool:
    """Whether a span (recorded or not) is current: cheaper than current_ids when only that matters."""
    return _enabled and trace.get_current_span().get_span_context().is_valid


def current_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) in hex of the active span, for log lines; None without one."""
    if not _enabled:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the active span's ids on every log line written inside it."""
    ids = current_ids()
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    return event


def mark_error(current: Span | None, description: str) -> None:
    """Mark a span failed with a short reason (a job that ended failed is not an exception)."""
    if current is not None:
        current.set_status(Status(StatusCode.ERROR, description[:200]))


def event(current: Span | None, name: str, attributes: Mapping[str, Any] | None = None) -> None:
    """Add a timestamped event to a span (no-op when off)."""
    if current is not None:
        current.add_event(name, dict(attributes or {}))
