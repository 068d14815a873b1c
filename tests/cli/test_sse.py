"""The SSE reader follows the event-stream parsing rules the API's stream relies on."""

from __future__ import annotations

from framefleet.cli.sse import SseEvent, SseParser, iter_events


def parse(text: str) -> list[SseEvent]:
    return list(iter_events(text.splitlines()))


def test_event_with_type_id_and_json_data() -> None:
    events = parse('id: 1700000000000-0\nevent: progress\ndata: {"percent": 12.5}\n\n')
    assert events == [SseEvent(event="progress", data='{"percent": 12.5}', id="1700000000000-0")]
    assert events[0].json() == {"percent": 12.5}


def test_data_lines_are_joined_with_newlines() -> None:
    (event,) = parse("data: first\ndata: second\ndata:\n\n")
    assert event.data == "first\nsecond\n"
    assert event.event == "message"


def test_comments_are_ignored() -> None:
    events = parse(": keep-alive\n\n: another\nevent: state\n: between fields\ndata: {}\n\n")
    assert [e.event for e in events] == ["state"]


def test_only_one_leading_space_is_stripped() -> None:
    (event,) = parse("data:no-space\ndata:  two-spaces\n\n")
    assert event.data == "no-space\n two-spaces"


def test_blank_line_without_data_dispatches_nothing_and_resets_the_type() -> None:
    events = parse("event: orphan\n\ndata: x\n\n")
    assert events == [SseEvent(event="message", data="x")]


def test_last_event_id_carries_over_and_nul_ids_are_ignored() -> None:
    parser = SseParser()
    events = list(
        iter_events(["id: 5-0", "data: a", "", "data: b", "", "id: bad\0id", "data: c", ""], parser)
    )
    assert [e.id for e in events] == ["5-0", "5-0", "5-0"]
    assert parser.last_event_id == "5-0"


def test_retry_field_and_unknown_fields() -> None:
    (event,) = parse("retry: 3000\nfoo: bar\nretry: soon\ndata: x\n\n")
    assert event.retry == 3000
    assert event.data == "x"


def test_crlf_lines_and_field_without_colon() -> None:
    parser = SseParser()
    assert parser.feed("event: done\r\n") is None
    assert parser.feed("data\r\n") is None
    event = parser.feed("\r\n")
    assert event == SseEvent(event="done", data="")


def test_unterminated_final_event_is_dropped() -> None:
    assert [e.data for e in parse("data: complete\n\ndata: cut off")] == ["complete"]
