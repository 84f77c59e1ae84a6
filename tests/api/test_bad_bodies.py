"""A generated corpus of bad request bodies: each one is a clean 4xx in OpenAI's error shape, never a 500.

The corpus is built in code from one valid body per way of reaching the pipeline (a demo model, an upstream
model, a fusion slug, the server tool, the plugin; streamed and not) and mutations of them: lone surrogates in
keys and values, nesting far past the limit wherever the schema takes free-form JSON, bytes that are not
UTF-8, NUL bytes, numbers JSON cannot carry, duplicate keys, wrong top levels, wrong content types, wrong
types and sizes per field. Bodies are sent in groups, one test per group (a test per body would spend nearly
all its time on fixtures); ``test_the_corpus_size_is_recorded`` prints the size and records it in the JUnit
report.
"""

from __future__ import annotations

import codecs
import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.conf import global_settings

from apps.api.body import MAX_JSON_DEPTH, json_depth
from apps.api.schemas import MAX_MESSAGE_CHARS, MAX_MESSAGES, MAX_PLUGINS, MAX_TOOLS
from apps.fusion.schemas import MAX_SEATS
from tests.api.conftest import Caller, auth
from tests.fakes.upstream import FakeUpstream

JSON = "application/json"
HELLO = [{"role": "user", "content": "Hello"}]
NOTE_TOOL = {
    "type": "function",
    "function": {
        "name": "save_note",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}},
    },
}
DEMO_PLUGIN = {"id": "fusion", "analysis_models": ["demo/atlas", "demo/birch"], "model": "demo/judge"}

# One valid body per way in; each is answered (see the test of the bases below), so what a case changes is
# what gets it refused.
BASES: dict[str, dict[str, Any]] = {
    "demo": {"model": "demo/atlas", "messages": HELLO},
    "upstream": {"model": "vendor/echo", "messages": HELLO},
    "slug": {"model": "fusion/demo", "messages": HELLO},
    "tool": {
        "model": "demo/writer",
        "messages": HELLO,
        "tools": [{"type": "fusion"}],
        "tool_choice": "required",
    },
    "plugin": {"model": "fusion", "messages": HELLO, "plugins": [DEMO_PLUGIN]},
}
# No valid UTF-16: a lone high half, a lone low one, halves the wrong way round, a high one before a letter.
SURROGATES = ("\ud800", "\udfff", "\udc00\ud800", "\ud800A")
CLEAN_STATUSES = {400, 413, 415}


@dataclass(frozen=True)
class Case:
    id: str
    body: bytes
    content_type: str | None = JSON
    # The ``param`` the error must name, where one field is to blame.
    param: str | None = None


Groups = dict[str, list[Case]]


# --- building bodies -------------------------------------------------------------------------------------

_SPLICE = "\x00splice\x00"


def _dump(body: Any) -> bytes:
    """``body`` as JSON, lone surrogates written as ``\\uXXXX`` escapes (ensure_ascii does that)."""
    return json.dumps(body, ensure_ascii=True).encode("ascii")


def _spliced(body: Any, raw: str) -> bytes:
    """``body`` with the value ``_SPLICE`` replaced by ``raw``, JSON text written by hand."""
    text = _dump(body).decode("ascii")
    marker = json.dumps(_SPLICE)
    assert text.count(marker) == 1
    return text.replace(marker, raw).encode("utf-8")


def _with(base: str, **fields: Any) -> dict[str, Any]:
    body = copy.deepcopy(BASES[base])
    body.update(fields)
    return body


def _content(base: str, content: Any) -> dict[str, Any]:
    return _with(base, messages=[{"role": "user", "content": content}])


def deep_array(depth: int) -> str:
    return "[" * depth + "]" * depth


def deep_object(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def deep_mixed(depth: int) -> str:
    return '[{"a":' * (depth // 2) + "1" + "}]" * (depth // 2)


def _function_tool(**function: Any) -> dict[str, Any]:
    return {"type": "function", "function": {"name": "f", **function}}


# --- the corpus ------------------------------------------------------------------------------------------


def _every_way_in() -> Groups:
    """The failures the reports named, on every way in, streamed and not."""
    groups: Groups = {}
    for base in BASES:
        for stream in (False, True):
            tag = f"{base}-{'stream' if stream else 'json'}"

            def body(messages: Any = HELLO, **fields: Any) -> dict[str, Any]:
                return _with(base, stream=stream, messages=messages, **fields)  # noqa: B023 (used at once)

            def user(content: Any, **extra: Any) -> list[dict[str, Any]]:
                return [{"role": "user", "content": content, **extra}]

            content = "messages.0.content"
            groups.setdefault(base, []).extend(
                [
                    Case(f"{tag}-surrogate-content", _dump(body(user("\ud800"))), param=content),
                    Case(f"{tag}-surrogate-low", _dump(body(user("hi \udfff"))), param=content),
                    Case(
                        f"{tag}-surrogate-part",
                        _dump(body(user([{"type": "text", "text": "x\udbff"}]))),
                        param="messages.0.content.0.text",
                    ),
                    Case(
                        f"{tag}-surrogate-in-a-key",
                        _dump(body(user("Hi", **{"x\ud800": 1}))),
                        param="messages.0",
                    ),
                    Case(
                        f"{tag}-surrogate-system",
                        _dump(body([{"role": "system", "content": "\udc00"}, *HELLO])),
                        param=content,
                    ),
                    Case(f"{tag}-deep-top", _spliced(body(extra=_SPLICE), deep_array(5_000))),
                    Case(f"{tag}-deep-content", _spliced(body(user(_SPLICE)), deep_object(5_000))),
                    Case(f"{tag}-nan", _spliced(body(temperature=_SPLICE), "NaN")),
                    Case(f"{tag}-infinite", _spliced(body(temperature=_SPLICE), "1e999")),
                    Case(
                        f"{tag}-duplicate-model", _dump(body()).replace(b"{", b'{"model": "demo/atlas", ', 1)
                    ),
                    Case(f"{tag}-invalid-utf8", _dump(body(user("A"))).replace(b'"A"', b'"\xff\xfe"')),
                    Case(f"{tag}-raw-nul", _dump(body(user("A"))).replace(b'"A"', b'"a\x00b"')),
                    Case(f"{tag}-utf16", _dump(body()).decode("ascii").encode("utf-16")),
                ]
            )
    return groups


def _deep_in_free_form_json() -> Groups:
    """Nesting wherever the schema takes free-form JSON (``dict[str, Any]``), and just past the limit."""
    places: dict[str, Callable[[str], dict[str, Any]]] = {
        "tool-parameters": lambda base: _with(base, tools=[_function_tool(parameters={"deep": _SPLICE})]),
        "tool-parameters-beside-fusion": lambda base: _with(
            base, tools=[{"type": "fusion"}, _function_tool(parameters=_SPLICE)]
        ),
        "plugin-tools": lambda base: _with(base, plugins=[{**DEMO_PLUGIN, "tools": [{"deep": _SPLICE}]}]),
        "response-format": lambda base: _with(
            base, response_format={"type": "json_schema", "json_schema": _SPLICE}
        ),
        "tool-choice": lambda base: _with(base, tool_choice={"type": "function", "function": _SPLICE}),
        "other-plugin": lambda base: _with(base, plugins=[{"id": "other", "config": _SPLICE}]),
        "message-extra": lambda base: _with(
            base, messages=[{"role": "user", "content": "Hi", "meta": _SPLICE}]
        ),
    }
    shapes = {"array": deep_array, "object": deep_object, "mixed": deep_mixed}
    variants = [("demo", shape, 5_000) for shape in shapes] + [
        ("demo", "array", 100_000),
        ("upstream", "object", 5_000),
    ]
    groups: Groups = {
        "deep-free-form": [
            Case(f"deep-{place}-{base}-{shape}-{depth}", _spliced(build(base), shapes[shape](depth)))
            for place, build in places.items()
            for base, shape, depth in variants
        ]
    }
    top = _dump(BASES["demo"]).decode("ascii")
    groups["deep-whole-body"] = [
        Case("deep-whole-body-array-5000", deep_array(5_000).encode()),
        Case("deep-whole-body-object-5000", deep_object(5_000).encode()),
        Case("deep-whole-body-unclosed", b"[" * 100_000),
        Case("deep-whole-body-unclosed-objects", b'{"a":' * 50_000),
        Case("deep-body-inside-arrays", ("[" * 5_000 + top + "]" * 5_000).encode()),
        # One level past the limit is refused, whether the last level is an array or an object.
        Case(
            "deep-one-past-the-limit-array",
            _spliced(_with("demo", extra=_SPLICE), deep_array(MAX_JSON_DEPTH)),
        ),
        Case(
            "deep-one-past-the-limit-object",
            _spliced(_with("demo", extra=_SPLICE), deep_object(MAX_JSON_DEPTH)),
        ),
        Case(
            "deep-past-the-limit-in-parameters",
            _spliced(_with("demo", tools=[_function_tool(parameters=_SPLICE)]), deep_object(MAX_JSON_DEPTH)),
        ),
    ]
    return groups


def _surrogates_everywhere() -> Groups:
    """Lone surrogates in every kind of place a string can be, keys included, each naming its field."""
    groups: Groups = {}
    for index, lone in enumerate(SURROGATES):
        places: list[tuple[str, dict[str, Any], str | None]] = [
            ("content", _content("demo", f"Hi {lone}"), "messages.0.content"),
            ("model", _with("demo", model=f"demo/{lone}"), "model"),
            ("user", _with("demo", user=lone), "user"),
            ("name", _with("demo", messages=[{**HELLO[0], "name": lone}]), "messages.0.name"),
            ("top-level-key", {**BASES["demo"], lone: 1}, None),
            ("unknown-field", _with("demo", metadata={"note": lone}), "metadata.note"),
            (
                "tool-parameters-value",
                _with("demo", tools=[_function_tool(parameters={"d": lone})]),
                "tools.0.function.parameters.d",
            ),
            (
                "tool-parameters-key",
                _with("demo", tools=[_function_tool(parameters={lone: {}})]),
                "tools.0.function.parameters",
            ),
            (
                "tool-description",
                _with("tool", tools=[{"type": "fusion"}, _function_tool(description=lone)]),
                "tools.1.function.description",
            ),
            ("plugin-model", _with("plugin", plugins=[{**DEMO_PLUGIN, "model": lone}]), "plugins.0.model"),
            (
                "plugin-analysis-models",
                _with("plugin", plugins=[{**DEMO_PLUGIN, "analysis_models": ["demo/atlas", lone]}]),
                "plugins.0.analysis_models.1",
            ),
            (
                "plugin-tools",
                _with("plugin", plugins=[{**DEMO_PLUGIN, "tools": [{"type": lone}]}]),
                "plugins.0.tools.0.type",
            ),
            ("plugin-preset", _with("slug", plugins=[{"id": "fusion", "preset": lone}]), "plugins.0.preset"),
            ("response-format", _with("upstream", response_format={"type": lone}), "response_format.type"),
            (
                "tool-call-arguments",
                _with(
                    "upstream",
                    messages=[
                        *HELLO,
                        {
                            "role": "assistant",
                            "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": lone}}],
                        },
                        {"role": "tool", "tool_call_id": "c1", "content": "done"},
                    ],
                ),
                "messages.1.tool_calls.0.function.arguments",
            ),
            (
                "tool-message",
                _with("upstream", messages=[*HELLO, {"role": "tool", "tool_call_id": lone, "content": lone}]),
                "messages.1.tool_call_id",
            ),
        ]
        groups[f"surrogates-{index}"] = [
            Case(f"surrogate-{index}-{place}", _dump(body), param=param) for place, body, param in places
        ]
    return groups


def _encodings() -> Groups:
    text = json.dumps(_content("demo", "Café ±"), ensure_ascii=False)
    cases = [
        Case(f"encoding-{codec}", text.encode(codec))
        for codec in (
            "utf-16",
            "utf-16-le",
            "utf-16-be",
            "utf-32",
            "utf-32-le",
            "utf-32-be",
            "latin-1",
            "cp1252",
        )
    ]
    cases += [
        Case("encoding-utf8-bom", codecs.BOM_UTF8 + text.encode("utf-8")),
        Case("encoding-utf8-bom-twice", codecs.BOM_UTF8 * 2 + text.encode("utf-8")),
        Case("encoding-utf16-bom-on-utf8", codecs.BOM_UTF16_LE + text.encode("utf-8")),
    ]
    ascii_body = _dump(_content("demo", "@@"))
    bad_bytes = {
        "lone-0xff": b"\xff",
        "lone-continuation": b"\x80",
        "bad-second-byte": b"\xc3\x28",
        "overlong-slash": b"\xc0\xaf",
        "overlong-nul": b"\xc0\x80",
        "encoded-surrogate": b"\xed\xa0\x80",
        "encoded-surrogate-pair": b"\xed\xa0\xbd\xed\xb8\x80",
        "past-u10ffff": b"\xf4\x90\x80\x80",
        "five-byte": b"\xf8\x88\x80\x80\x80",
        "truncated-three-byte": b"\xe2\x82",
    }
    cases += [
        Case(f"invalid-utf8-in-value-{name}", ascii_body.replace(b"@@", raw))
        for name, raw in bad_bytes.items()
    ]
    cases += [
        Case("invalid-utf8-in-key", _dump({**BASES["demo"], "@@": 1}).replace(b"@@", b"\xff")),
        Case("invalid-utf8-outside-strings", _dump(BASES["demo"]) + b"\xff"),
        Case("invalid-utf8-truncated-at-the-end", _dump(BASES["demo"])[:-2] + b'\xe2"}'),
    ]
    return {"encodings": cases}


def _nul_bytes() -> Groups:
    body = _dump(BASES["demo"])
    return {
        "nul-bytes": [
            Case("nul-only", b"\x00"),
            Case("nul-many", b"\x00" * 64),
            Case("nul-before", b"\x00" + body),
            Case("nul-after", body + b"\x00"),
            Case("nul-between-tokens", body.replace(b", ", b",\x00 ", 1)),
            Case("nul-in-a-key", body.replace(b'"model"', b'"mo\x00del"', 1)),
            Case("nul-in-a-value", body.replace(b"Hello", b"Hel\x00lo")),
            Case("nul-utf16-lookalike", body.decode("ascii").encode("utf-16-le")),
        ]
    }


def _numbers() -> Groups:
    cases: list[Case] = []
    places = {
        "temperature": _with("demo", temperature=_SPLICE),
        "plugin-temperature": _with("plugin", plugins=[{**DEMO_PLUGIN, "temperature": _SPLICE}]),
        "parameters": _with("demo", tools=[_function_tool(parameters={"x": _SPLICE})]),
        "response-format": _with("upstream", response_format={"type": "json_object", "x": _SPLICE}),
    }
    numbers = {
        "nan": "NaN",
        "infinity": "Infinity",
        "minus-infinity": "-Infinity",
        "overflow": "1e999",
        "minus-overflow": "-1e999",
        "long-overflow": "9" * 400 + ".0",
    }
    for name, raw in numbers.items():
        cases += [Case(f"number-{name}-{place}", _spliced(body, raw)) for place, body in places.items()]
    digits = "1" + "0" * 5_000  # past Python's limit on the digits of an int it reads from text
    max_tokens = _with("demo", max_tokens=_SPLICE)
    cases += [
        Case("number-five-thousand-digits-max-tokens", _spliced(max_tokens, digits)),
        Case(
            "number-five-thousand-digits-free-form",
            _spliced(_with("upstream", response_format={"x": _SPLICE}), digits),
        ),
        Case("number-huge-max-tokens", _dump(_with("demo", max_tokens=10**100)), param="max_tokens"),
        Case("number-huge-float-max-tokens", _spliced(max_tokens, "1e300"), param="max_tokens"),
        Case("number-hex", _spliced(max_tokens, "0x10")),
        Case("number-leading-zero", _spliced(max_tokens, "010")),
        Case("number-plus", _spliced(max_tokens, "+10")),
        Case("number-bare-point", _spliced(_with("demo", temperature=_SPLICE), ".5")),
    ]
    return {"numbers": cases}


def _duplicate_keys() -> Groups:
    def dup(body: dict[str, Any], where: bytes, extra: bytes) -> bytes:
        raw = _dump(body)
        assert where in raw
        return raw.replace(where, where + extra, 1)

    demo = BASES["demo"]
    parameters = _dump(_with("demo", tools=[NOTE_TOOL]))
    return {
        "duplicate-keys": [
            Case("duplicate-model-same", dup(demo, b"{", b'"model": "demo/atlas", ')),
            Case("duplicate-model-different", dup(demo, b"{", b'"model": "fusion", ')),
            Case("duplicate-messages", dup(demo, b"{", b'"messages": [], ')),
            Case("duplicate-stream", _dump(_with("demo", stream=True))[:-1] + b', "stream": false}'),
            Case("duplicate-model-escaped", dup(demo, b"{", b'"mod\\u0065l": "demo/birch", ')),
            Case("duplicate-role", dup(demo, b'[{"role": "user", ', b'"role": "system", ')),
            Case("duplicate-content", dup(demo, b'[{"role": "user", ', b'"content": "Bye", ')),
            Case(
                "duplicate-in-parameters",
                parameters.replace(b'"properties": {', b'"type": "array", "properties": {', 1),
            ),
            Case(
                "duplicate-in-plugin", dup(BASES["plugin"], b'{"id": "fusion", ', b'"model": "demo/atlas", ')
            ),
            Case("duplicate-in-unknown-field", _dump(_with("demo", metadata={"a": 1}))[:-2] + b', "a": 2}}'),
        ]
    }


def _structure() -> Groups:
    body = _dump(BASES["demo"])
    cases = [
        Case("empty", b""),
        Case("whitespace", b" \n\t\r "),
        Case("top-array", b"[]"),
        Case("top-array-of-body", b"[" + body + b"]"),
        Case("top-string", b'"hello"'),
        Case("top-number", b"1"),
        Case("top-float", b"1.5"),
        Case("top-null", b"null"),
        Case("top-true", b"true"),
        Case("top-false", b"false"),
        Case("empty-object", b"{}"),
        Case("two-objects", body + b" " + body),
        Case("trailing-garbage", body + b"x"),
        Case("trailing-comma", body[:-1] + b", }"),
        Case("single-quotes", body.replace(b'"', b"'")),
        Case("unquoted-keys", body.replace(b'"model"', b"model")),
        Case("comment", b"/* hi */" + body),
        Case("raw-tab-in-string", body.replace(b"Hello", b"Hel\tlo")),
        Case("raw-newline-in-string", body.replace(b"Hello", b"Hel\nlo")),
        Case("bad-escape", body.replace(b"Hello", b"Hel\\xlo")),
        Case("short-unicode-escape", body.replace(b"Hello", b"Hel\\u12")),
        Case("python-unicode-escape", body.replace(b"Hello", b"\\U0001F600")),
        Case("escaped-closing-quote", body.replace(b'Hello"', b'Hello\\"')),
        Case("unclosed-escaped-quotes", b'{"model": "' + b'\\"' * 50_000),
    ]
    cases += [
        Case(f"truncated-at-{cut}", body[:cut]) for cut in (1, 2, 9, len(body) // 3, len(body) // 2, -2, -1)
    ]
    return {"structure": cases}


def _content_types() -> Groups:
    body = _dump(BASES["demo"])
    kinds = [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "application/json; charset=utf-16",
        "application/json; charset=latin-1",
        "application/json; charset=nonsense",
        "text/json; charset=ascii",
    ]
    return {"content-types": [Case(f"content-type-{kind}", body, content_type=kind) for kind in kinds]}


def _wrong_types_and_sizes() -> Groups:
    user = HELLO[0]
    fields: dict[str, list[Any]] = {
        "model": [1, None, [], {}, "", True, "x" * 201],
        "messages": [
            "Hello",
            {},
            [],
            [1],
            [None],
            [[]],
            ["Hello"],
            [{"content": "x"}],
            [{"role": 1, "content": "x"}],
            [{"role": "robot", "content": "x"}],
            [{"role": "user"}],
            [{"role": "user", "content": 1}],
            [{"role": "user", "content": {}}],
            [{"role": "user", "content": [1]}],
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}],
            [{"role": "user", "content": [{"type": "text"}]}],
            [{"role": "tool", "content": "x"}],
            [{**user, "name": 1}],
            [{**user, "name": "n" * 65}],
            [{"role": "assistant", "tool_calls": "x"}],
            [{"role": "assistant", "tool_calls": [{"id": "a", "function": {"name": 1}}]}],
            [{"role": "assistant", "tool_calls": [{"id": "a" * 201, "function": {"name": "f"}}]}],
            [{"role": "user", "content": "x" * (MAX_MESSAGE_CHARS + 1)}],
            [{"role": "user", "content": [{"type": "text", "text": "x" * (MAX_MESSAGE_CHARS + 1)}]}],
            [user] * (MAX_MESSAGES + 1),
        ],
        "stream": [[], {}, "maybe", 2, None],
        "stream_options": [1, [], {"include_usage": "often"}],
        "temperature": ["hot", [], -1, 3],
        "max_tokens": [0, -1, 1.5, "ten", 200_001],
        "max_completion_tokens": [0, {}],
        "n": [2, 0, "two"],
        "response_format": [[], "json", 1],
        "tools": [
            {},
            "x",
            [1],
            [None],
            [{"type": "function"}],
            [{"type": "web"}],
            [{"type": "function", "function": {"name": "bad name"}}],
            [{"type": "function", "function": {"name": "fusion"}}],
            [NOTE_TOOL, NOTE_TOOL],
            [_function_tool(parameters=[])],
            [_function_tool(description="d" * 8_001)],
            [{"type": "function", "function": {"name": f"f{i}"}} for i in range(MAX_TOOLS + 1)],
        ],
        "tool_choice": [
            "sometimes",
            1,
            [],
            {"type": "function", "function": {"name": "nope"}},
            {"type": "function"},
            {},
        ],
        "plugins": [
            "x",
            {},
            [1],
            [{"id": "fusion", "analysis_models": "x"}],
            [{"id": "fusion", "analysis_models": []}],
            [{"id": "fusion", "analysis_models": [""]}],
            [{"id": "fusion", "analysis_models": ["demo/atlas"] * (MAX_SEATS + 1)}],
            [{"id": "fusion", "temperature": 5}],
            [{"id": "fusion", "max_tool_calls": 0}],
            [{"id": "fusion", "tools": "x"}],
            [{"id": "fusion", "tools": [1]}],
            [{"id": "fusion", "tools": [{}] * 9}],
            [{"id": "fusion", "model": ""}],
            [{"id": "fusion", "enabled": "perhaps"}],
            [DEMO_PLUGIN, DEMO_PLUGIN],
            [{"id": "other"}] * (MAX_PLUGINS + 1),
        ],
        "user": [1, [], "u" * 257],
    }
    # Where the error sits at the field itself, it must be named; nested ones name a path below it.
    named = {
        "model",
        "stream",
        "temperature",
        "max_tokens",
        "max_completion_tokens",
        "n",
        "response_format",
        "user",
    }
    cases = [
        Case(
            f"wrong-{field}-{index}",
            _dump(_with("demo", **{field: value})),
            param=field if field in named else None,
        )
        for field, values in fields.items()
        for index, value in enumerate(values)
    ]
    # Over Django's upload limit (the project keeps the default): 413 before any parsing.
    size = global_settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1
    cases += [
        Case("too-large", _dump(_content("demo", "x" * size))),
        Case("too-large-not-json", b"\x00" * size),
    ]
    return {"wrong-types-and-sizes": cases}


GROUPS: Groups = {
    **_every_way_in(),
    **_deep_in_free_form_json(),
    **_surrogates_everywhere(),
    **_encodings(),
    **_nul_bytes(),
    **_numbers(),
    **_duplicate_keys(),
    **_structure(),
    **_content_types(),
    **_wrong_types_and_sizes(),
}
CORPUS = [case for cases in GROUPS.values() for case in cases]


# --- the tests -------------------------------------------------------------------------------------------


def test_the_corpus_size_is_recorded(record_testsuite_property: Callable[[str, object], None]) -> None:
    ids = [case.id for case in CORPUS]
    assert len(ids) == len(set(ids)), "every body has a name of its own"
    record_testsuite_property("bad_body_corpus_size", len(CORPUS))
    print(f"\nbad-body corpus: {len(CORPUS)} bodies in {len(GROUPS)} groups")
    assert 300 <= len(CORPUS) <= 1_000


async def _post(
    api: httpx.AsyncClient, caller: Caller, body: bytes, content_type: str | None = JSON
) -> httpx.Response:
    headers = auth(caller)
    if content_type is not None:
        headers["Content-Type"] = content_type
    return await api.post("/chat/completions", headers=headers, content=body)


def _unclean(case: Case, response: httpx.Response) -> str | None:
    """What is wrong with the answer to a bad body; None for a clean error in OpenAI's shape."""
    if response.status_code not in CLEAN_STATUSES:
        return f"status {response.status_code}: {response.text[:300]}"
    if response.headers.get("Content-Type") != "application/json":
        return f"content type {response.headers.get('Content-Type')!r}"
    body = response.json()
    error = body.get("error") if isinstance(body, dict) and set(body) == {"error"} else None
    if not isinstance(error, dict) or not {"message", "type", "code", "param"} <= set(error):
        return f"not OpenAI's error shape: {response.text[:300]}"
    if (
        not isinstance(error["message"], str)
        or not error["message"]
        or error["type"] != "invalid_request_error"
    ):
        return f"message or type: {error}"
    if case.param is not None and error["param"] != case.param:
        return f"param {error['param']!r}, expected {case.param!r}: {error['message']}"
    return None


@pytest.mark.parametrize("group", list(GROUPS))
async def test_every_bad_body_is_a_clean_4xx_in_openais_shape_never_a_500(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream, settings: Any, group: str
) -> None:
    settings.API_RATE_LIMIT_PER_MINUTE = 100_000  # a few dozen requests from one key in a moment
    problems = []
    for case in GROUPS[group]:
        problem = _unclean(case, await _post(api, alice, case.body, case.content_type))
        if problem is not None:
            problems.append(f"{case.id}: {problem}")
    assert not problems, f"{len(problems)} of {len(GROUPS[group])}:\n" + "\n".join(problems)
    assert upstream.requests == [], "nothing is sent on for a body that was refused"


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
@pytest.mark.parametrize("base", list(BASES))
async def test_each_base_body_is_answered_so_the_mutation_is_what_gets_refused(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream, base: str, stream: bool
) -> None:
    response = await _post(api, alice, _dump(_with(base, stream=stream)))
    assert response.status_code == 200, response.text[:500]
    assert '"error"' not in response.text


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        pytest.param(_dump(_content("demo", "Hi \U0001f600")), JSON, id="a surrogate pair (an emoji)"),
        pytest.param(_dump(_content("demo", "C:\\ud800")), JSON, id="an escaped backslash before ud800"),
        pytest.param(_dump(_content("demo", "[{" * 20_000)), JSON, id="brackets inside a string"),
        pytest.param(_dump(_with("demo", seed=1.7e308)), JSON, id="a number at the edge of a float"),
        pytest.param(
            # body, tools, the tool, function: the parameters' schema may use the remaining levels.
            _spliced(
                _with("demo", tools=[_function_tool(parameters=_SPLICE)]), deep_object(MAX_JSON_DEPTH - 4)
            ),
            JSON,
            id="nesting exactly at the limit",
        ),
        pytest.param(_dump(BASES["demo"]), "application/json; charset=UTF-8", id="charset utf-8 in capitals"),
        pytest.param(_dump(BASES["demo"]), "application/vnd.example+json", id="a structured JSON type"),
        pytest.param(_dump(BASES["demo"]), None, id="no content type at all"),
        pytest.param(_dump(BASES["demo"]), "", id="an empty content type"),
    ],
)
async def test_what_looks_bad_but_is_valid_json_is_answered(
    api: httpx.AsyncClient, alice: Caller, body: bytes, content_type: str | None
) -> None:
    response = await _post(api, alice, body, content_type)
    assert response.status_code == 200, response.text[:500]


@pytest.mark.parametrize("base", list(BASES))
async def test_an_escaped_nul_is_valid_json_and_answered_on_every_way_in(
    api: httpx.AsyncClient, alice: Caller, upstream: FakeUpstream, base: str
) -> None:
    """Unlike a raw NUL byte, ``\\u0000`` is valid JSON: it is replaced wherever text is stored (PostgreSQL's
    text and jsonb columns refuse it), so the system prompt in a turn's panel and a demo model's echo of it
    are saved, and the caller gets an answer."""
    nul = "a\x00b"
    body = _with(
        base, messages=[{"role": "system", "content": nul}, {"role": "user", "content": nul}], user=nul
    )
    if base == "plugin":
        body["plugins"] = [{**DEMO_PLUGIN, "tools": [{"type": nul}]}]
    if base in ("demo", "tool"):
        body["tools"] = [
            *body.get("tools", []),
            _function_tool(description=nul, parameters={nul: {"type": nul}}),
        ]
    response = await _post(api, alice, _dump(body))
    assert response.status_code == 200, response.text[:500]


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        ("{}", 1),
        ('{"a": [1, {"b": []}]}', 4),
        ('["[[[", "]]]]]]", "\\"[[[", {}]', 2),
        ('"[[[[["', 0),
        ("[" * 100_000, 100_000),
        ('["\\\\"]', 1),
    ],
)
def test_json_depth_counts_brackets_outside_strings_only(text: str, depth: int) -> None:
    assert json_depth(text) == depth


def test_measuring_depth_stays_linear_on_a_body_of_unclosed_strings() -> None:
    # Escaped quotes that never close: a string pattern that can fail would restart at each one (quadratic).
    text = '{"a": "' + '\\"' * 1_000_000
    started = time.perf_counter()
    assert json_depth(text) == 1
    assert time.perf_counter() - started < 1.0
