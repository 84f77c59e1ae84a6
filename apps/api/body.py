"""The API's request bodies: the one place where bytes become a validated request, or a clean 4xx.

A body is refused, before any of it is used, when:

- it names a ``Content-Type`` other than JSON in UTF-8 (415; none at all is taken for JSON), or it is over
  Django's upload limit (413);
- it is not UTF-8 (a byte-order mark, UTF-16 or UTF-32 included), or not JSON as RFC 8259 has it: NaN and
  Infinity are not numbers, a number too large for a float is refused rather than read as infinity, and a
  duplicate key is refused rather than letting one of its values win silently (parsers differ on which);
- it nests arrays and objects deeper than ``MAX_JSON_DEPTH``. The depth is measured on the text, before
  parsing and without recursion: Python's parser recurses once per level and gives out near 1,000, and
  everything after it (validation, ``json.dumps`` for the upstream request) walks the same depth;
- a string anywhere in it, key or value, holds a lone UTF-16 surrogate (``"\\ud800"``). That is valid JSON
  syntax for no character: it cannot be encoded as UTF-8, so it would fail wherever the text is hashed, stored
  or sent on. The chatroom socket refuses the same strings (pydantic's JSON parser rejects them); here the
  error names the field.

Then the object is validated by the request's pydantic model, whose errors name the field as ``param``.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from itertools import accumulate
from typing import Any, TypeVar

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest
from pydantic import BaseModel, ValidationError

from apps.api.errors import ApiError, validation_error

# Deep enough for any tool's JSON Schema (each schema level is two JSON levels), far from Python's recursion
# limit, which the parser, pydantic and json.dumps all spend.
MAX_JSON_DEPTH = 64

M = TypeVar("M", bound=BaseModel)

# A JSON string, or from an opening quote to the end of the text when it is never closed: the match always
# succeeds where it starts, so stripping strings stays linear even on a body of unclosed quotes.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
# Lone surrogates can only come from \uD800-\uDFFF escapes: strict UTF-8 decoding refuses encoded ones.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_TYPE = re.compile(r"^application/(?:[\w.+-]+\+)?json$")


class _BadJson(ValueError):
    """A body that parses as JSON text but breaks one of our rules for it."""


def body_parse(request: HttpRequest, schema: type[M]) -> M:
    """The request's JSON body validated as ``schema``; ``ApiError`` 400/413/415 naming what is wrong."""
    _content_type_check(request)
    try:
        raw = request.body
    except RequestDataTooBig:
        raise ApiError(413, "The request body is too large.", code="request_too_large") from None
    data = json_object(raw)
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise validation_error(error) from None


def json_object(raw: bytes) -> dict[str, Any]:
    """``raw`` as one JSON object under the rules of the module docstring; ``ApiError`` 400 otherwise."""
    text = _utf8(raw)
    if not text.strip():
        raise ApiError(400, "The body is empty: send a JSON object.", code="invalid_json")
    if json_depth(text) > MAX_JSON_DEPTH:
        raise ApiError(
            400,
            f"The body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep.",
            code="json_too_deep",
        )
    try:
        data = json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            parse_int=_int,
            object_pairs_hook=_unique_keys,
        )
    except ValueError as error:  # JSONDecodeError or _BadJson
        raise ApiError(400, f"The body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The body must be a JSON object.", code="invalid_request")
    if _SURROGATE_ESCAPE.search(text):
        _surrogates_refuse(data)
    return data


def json_depth(text: str) -> int:
    """How deeply ``text`` nests arrays and objects (outside strings), without parsing it or recursing."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _content_type_check(request: HttpRequest) -> None:
    if not request.headers.get("Content-Type", "").strip():
        return  # a bare client that names no type at all sends JSON here: nothing else is understood
    media = request.content_type or ""
    charset = (request.content_params or {}).get("charset", "utf-8").lower()
    if not _JSON_TYPE.match(media) or charset not in ("utf-8", "utf8"):
        shown = request.headers.get("Content-Type") or "none"
        raise ApiError(
            415,
            f"Send the body as JSON in UTF-8 with 'Content-Type: application/json' (got {shown[:100]!r}).",
            code="unsupported_media_type",
        )


def _utf8(raw: bytes) -> str:
    if raw.startswith(codecs.BOM_UTF8):
        raise ApiError(
            400, "The body starts with a byte-order mark: send UTF-8 without one.", code="invalid_json"
        )
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in raw[:4]:
        raise ApiError(400, "The body looks like UTF-16 or UTF-32: send it as UTF-8.", code="invalid_json")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(
            400, f"The body is not valid UTF-8 ({error.reason} at byte {error.start}).", code="invalid_json"
        ) from None


def _no_constant(name: str) -> Any:
    raise _BadJson(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _BadJson(f"the number {text[:40]} is too large")
    return value


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # past Python's limit on the digits of an int read from text
        raise _BadJson(f"the number {text[:20]}... has too many digits ({len(text):,})") from None


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _BadJson(f"the key {key[:80]!r} appears twice in one object")
        result[key] = value
    return result


def _surrogates_refuse(data: dict[str, Any]) -> None:
    """``ApiError`` 400 naming a field whose key or value has a lone surrogate."""
    # An explicit stack: the data is at most MAX_JSON_DEPTH deep, but walking it needs no recursion at all.
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if _SURROGATE.search(value):
                _surrogate_error(path, "has")
        elif isinstance(value, dict):
            for key in value:
                if _SURROGATE.search(key):
                    _surrogate_error(path, "has a key with")
            stack.extend(((*path, key), item) for key, item in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*path, index), item) for index, item in reversed(list(enumerate(value))))


def _surrogate_error(path: tuple[str | int, ...], what: str) -> None:
    # The path is made of keys already checked, so it is itself valid text.
    param = ".".join(str(part) for part in path) or None
    problem = (
        f"{what} a lone UTF-16 surrogate (an escape from \\ud800 to \\udfff without its pair), which is no "
        "character"
    )
    message = f"{param}: {problem}" if param else f"The body {problem}"
    raise ApiError(400, f"{message}; send text as valid Unicode.", code="invalid_request", param=param)
