from __future__ import annotations

from apps.providers.sse import SSEDecoder


def _events(*blocks: bytes, decoder: SSEDecoder | None = None) -> list[bytes]:
    decoder = decoder if decoder is not None else SSEDecoder()
    return [data for block in blocks for data in decoder.feed_bytes(block)]


def test_it_yields_each_event_and_skips_openrouter_comments() -> None:
    text = b': OPENROUTER PROCESSING\n\ndata: {"a": 1}\n\n: OPENROUTER PROCESSING\n\ndata: {"b": 2}\n\n'
    assert _events(text) == [b'{"a": 1}', b'{"b": 2}']


def test_it_joins_multi_line_data_with_newlines() -> None:
    assert _events(b"data: first\ndata: second\ndata:third\n\n") == [b"first\nsecond\nthird"]


def test_a_data_field_without_a_colon_is_an_empty_line_of_data() -> None:
    assert _events(b"data\n\ndata\ndata: x\n\n") == [b"", b"\nx"]


def test_it_strips_only_one_leading_space_and_carriage_returns() -> None:
    assert _events(b"data:  two spaces\r\n\r\n") == [b" two spaces"]


def test_it_ignores_other_fields_and_blank_lines_between_events() -> None:
    text = b"\n\nevent: message\nid: 7\nretry: 1000\ndata: x\n\n\n"
    assert _events(text) == [b"x"]


def test_it_stops_at_done_says_so_and_hands_back_nothing_after_it() -> None:
    decoder = SSEDecoder()
    assert _events(b"data: one\n\ndata: [DONE]\n\ndata: after\n\n", decoder=decoder) == [b"one"]
    assert decoder.done
    assert decoder.feed_bytes(b"data: more\n\n") == []


def test_it_drops_an_event_cut_off_before_its_blank_line() -> None:
    decoder = SSEDecoder()
    assert _events(b'data: {"whole": true}\n\ndata: {"cut', decoder=decoder) == [b'{"whole": true}']
    assert not decoder.done


def test_events_split_anywhere_across_reads_still_come_out_whole() -> None:
    text = 'data: {"a": "\u00e9\u27e6"}\r\n\r\ndata: two\r\rdata: three\n\ndata: [DONE]\r\n\r\n'.encode()
    expected = ['{"a": "\u00e9\u27e6"}'.encode(), b"two", b"three"]
    for cut in range(1, len(text)):
        decoder = SSEDecoder()
        assert _events(text[:cut], text[cut:], decoder=decoder) == expected, cut
        assert decoder.done, cut
    decoder = SSEDecoder()
    assert _events(*(text[i : i + 1] for i in range(len(text))), decoder=decoder) == expected
    assert decoder.done
