from __future__ import annotations

from collections.abc import AsyncIterator

from apps.providers.sse import SSEDecoder, sse_data


async def _lines(text: str) -> AsyncIterator[str]:
    for line in text.split("\n"):
        yield line


async def _collect(text: str, decoder: SSEDecoder | None = None) -> list[str]:
    return [data async for data in sse_data(_lines(text), decoder)]


async def test_it_yields_each_event_and_skips_openrouter_comments() -> None:
    text = ': OPENROUTER PROCESSING\n\ndata: {"a": 1}\n\n: OPENROUTER PROCESSING\n\ndata: {"b": 2}\n\n'
    assert await _collect(text) == ['{"a": 1}', '{"b": 2}']


async def test_it_joins_multi_line_data_with_newlines() -> None:
    assert await _collect("data: first\ndata: second\ndata:third\n\n") == ["first\nsecond\nthird"]


async def test_it_strips_only_one_leading_space_and_carriage_returns() -> None:
    assert await _collect("data:  two spaces\r\n\r\n") == [" two spaces"]


async def test_it_stops_at_done_and_says_so() -> None:
    decoder = SSEDecoder()
    text = "data: one\n\ndata: [DONE]\n\ndata: after\n\n"
    assert await _collect(text, decoder) == ["one"]
    assert decoder.done


async def test_it_ignores_other_fields_and_blank_lines_between_events() -> None:
    text = "\n\nevent: message\nid: 7\nretry: 1000\ndata: x\n\n\n"
    assert await _collect(text) == ["x"]


async def test_it_drops_an_event_cut_off_before_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert await _collect('data: {"whole": true}\n\ndata: {"cut', decoder) == ['{"whole": true}']
    assert not decoder.done


def _blocks(decoder: SSEDecoder, *blocks: bytes) -> list[bytes]:
    return [data for block in blocks for data in decoder.feed_bytes(block)]


def test_bytes_give_the_same_events_as_lines() -> None:
    text = (
        b': OPENROUTER PROCESSING\n\nevent: message\nid: 7\ndata: {"a": 1}\n\n'
        b"data: first\ndata: second\ndata:third\n\ndata\n\ndata:  two spaces\r\n\r\n"
    )
    assert _blocks(SSEDecoder(), text) == [b'{"a": 1}', b"first\nsecond\nthird", b"", b" two spaces"]


def test_bytes_split_anywhere_across_reads_still_give_whole_events() -> None:
    text = 'data: {"a": "\u00e9\u27e6"}\r\n\r\ndata: two\r\rdata: three\n\n'.encode()
    expected = ['{"a": "\u00e9\u27e6"}'.encode(), b"two", b"three"]
    for cut in range(1, len(text)):
        assert _blocks(SSEDecoder(), text[:cut], text[cut:]) == expected, cut
    assert _blocks(SSEDecoder(), *(text[i : i + 1] for i in range(len(text)))) == expected


def test_bytes_stop_at_done_and_drop_an_unfinished_event() -> None:
    decoder = SSEDecoder()
    assert _blocks(decoder, b"data: one\n\ndata: [DONE]\n\ndata: after\n\n") == [b"one"]
    assert decoder.done
    assert decoder.feed_bytes(b"data: more\n\n") == []
    cut = SSEDecoder()
    assert _blocks(cut, b'data: {"whole": true}\n\ndata: {"cut') == [b'{"whole": true}']
    assert not cut.done
