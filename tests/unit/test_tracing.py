"""Tracing switches: on only when the OTEL_* variables ask for it, and nothing loaded when off."""

from __future__ import annotations

import subprocess
import sys

import pytest

from framefleet.observability.tracing import wanted


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "  "}, False),
    ],
)
def test_wanted(env: dict[str, str], on: bool) -> None:
    assert wanted(env) is on


def test_off_loads_no_sdk_and_stamps_nothing() -> None:
    """With no OTEL_* set, building the API installs no tracer provider and loads no exporter, and spans and
    publish headers carry nothing (other libraries may import parts of the SDK for themselves)."""
    code = (
        "import sys\n"
        "from framefleet.api.app import create_app\n"
        "from framefleet.observability import tracing\n"
        "create_app()\n"
        "with tracing.span('x') as s:\n"
        "    assert s is None and tracing.inject({}) == {} and tracing.traceparent() is None\n"
        "from opentelemetry import trace\n"
        "assert type(trace.get_tracer_provider()).__name__ == 'ProxyTracerProvider'\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry.exporter')], 'exporter loaded'\n"
        "assert not tracing.enabled()\n"
    )
    env = {"PATH": "/usr/bin:/bin", "FRAMEFLEET_ENV": "dev"}
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def test_a_dropped_trace_records_nothing_below_it_and_keeps_its_context() -> None:
    """With the sampler dropping the root, children are not created (as a parent-based sampler would drop
    them) but the unsampled context still travels, so later spans of the job are dropped too."""
    code = (
        "from framefleet.observability import tracing\n"
        "assert tracing.configure('test')\n"
        "with tracing.span('root') as root:\n"
        "    assert root is not None and not root.is_recording()\n"
        "    with tracing.span('child') as child:\n"
        "        assert child is None\n"
        "    assert tracing.start('intake') is None\n"
        "    sent = tracing.traceparent()\n"
        "    assert sent and not int(sent[-2:], 16) & 1, sent  # the sampled flag is off\n"
        "with tracing.span('run', parent=tracing.context_of(sent)) as run:\n"
        "    assert run is None and tracing.inject({})['traceparent'] == sent\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_TRACES_SAMPLER": "always_off",
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)


def test_spans_reuse_one_tracer_and_write_the_w3c_header() -> None:
    """Spans come from the tracer made at configure (the SDK's get_tracer rebuilds scope objects and rewrites
    the warning filters on each call, a third of a span's cost), and the `traceparent` written directly is the
    one the W3C propagator writes, sampled or not."""
    code = (
        "from opentelemetry import trace\n"
        "from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator\n"
        "from framefleet.observability import tracing\n"
        "assert tracing.configure('test')\n"
        "calls = []\n"
        "real = trace.get_tracer\n"
        "trace.get_tracer = lambda *a, **k: calls.append(a) or real(*a, **k)\n"
        "def w3c(span):\n"
        "    carrier = {}\n"
        "    TraceContextTextMapPropagator().inject(carrier, context=trace.set_span_in_context(span))\n"
        "    return carrier['traceparent']\n"
        "with tracing.span('root', attributes={'a': 1}) as root:\n"
        "    intake = tracing.start('intake')\n"
        "    assert tracing.traceparent(intake) == w3c(intake)\n"
        "    assert tracing.traceparent() == w3c(root) == tracing.inject({})['traceparent']\n"
        "    intake.end()\n"
        "assert calls == [], calls\n"
        "assert tracing.traceparent() is None\n"
        "dropped = trace.NonRecordingSpan(trace.SpanContext(1, 2, False))\n"
        "assert tracing.traceparent(dropped) == w3c(dropped) == '00-' + '0' * 31 + '1-' + '0' * 15 + '2-00'\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
    }
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
