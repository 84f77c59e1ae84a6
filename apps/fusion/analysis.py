"""The judge step: ask for the analysis, parse and validate it, repair it once, or give a reason why not.

A judge that supports structured output is asked for JSON matching ``Analysis``'s JSON schema; any other
judge is instructed by the prompt alone, and its reply is searched for the JSON object (code fences and
chatter around it are tolerated). A reply that does not validate gets exactly one repair attempt; after
that, or after an upstream error, the run goes on without an analysis (the degraded path).
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import ValidationError

from apps.fusion.calls import CallProgress, call_collect, usage_priced
from apps.fusion.prompts import judge_repair_messages
from apps.fusion.schemas import Analysis, AnalysisDone, AnalysisFailed, Timings
from apps.providers.base import (
    ChatMessage,
    CompletionRequest,
    ModelGateway,
    ProviderError,
    Usage,
    json_storable,
)

AnalysisFailureReason = Literal[
    "judge_not_valid_json", "judge_schema_mismatch", "judge_upstream_error", "judge_empty_completion"
]

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)


class AnalysisError(Exception):
    """The judge's text is not a usable analysis; ``reason`` is one of the brief's failure codes."""

    def __init__(self, reason: AnalysisFailureReason, detail: str) -> None:
        super().__init__(detail)
        self.reason: AnalysisFailureReason = reason
        self.detail = detail


def _json_candidate(text: str) -> str:
    fenced = _FENCE.search(text)
    return fenced.group(1) if fenced and "{" in fenced.group(1) else text


def _validation_summary(error: ValidationError) -> str:
    # Field paths and messages only: the offending values are the judge's text, already kept in ``raw``.
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'object'}: {item['msg']}" for item in error.errors()
    ]
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    return "; ".join(problems[:5]) + more


def analysis_parse(text: str) -> Analysis:
    """The ``Analysis`` inside a judge's reply, or ``AnalysisError`` saying what is wrong with it."""
    if not text.strip():
        raise AnalysisError("judge_empty_completion", "the judge returned an empty completion")
    candidate = _json_candidate(text)
    start = candidate.find("{")
    if start < 0:
        raise AnalysisError("judge_not_valid_json", "the reply contains no JSON object")
    try:
        data, _ = json.JSONDecoder().raw_decode(candidate, start)
    except json.JSONDecodeError as error:
        raise AnalysisError(
            "judge_not_valid_json", f"invalid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from error
    try:
        return Analysis.model_validate(json_storable(data))
    except ValidationError as error:
        raise AnalysisError("judge_schema_mismatch", _validation_summary(error)) from error


def _strict(schema: Any) -> Any:
    """Close every object schema, as strict structured output requires."""
    if isinstance(schema, dict):
        closed = {key: _strict(value) for key, value in schema.items()}
        if closed.get("type") == "object" and "properties" in closed:
            closed["additionalProperties"] = False
            closed["required"] = list(closed["properties"])
        return closed
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    return schema


@functools.cache
def _analysis_schema() -> dict[str, Any]:
    # Built once: pydantic generates a model's JSON schema anew on every call (0.65 ms here), and every judge
    # request sends it. Read only: the request is serialised from it, never changed.
    schema: dict[str, Any] = _strict(Analysis.model_json_schema())
    return schema


def analysis_response_format() -> dict[str, Any]:
    """``response_format`` asking for ``Analysis`` as strict JSON schema (OpenAI / OpenRouter shape)."""
    return {
        "type": "json_schema",
        "json_schema": {"name": "fusion_analysis", "strict": True, "schema": _analysis_schema()},
    }


async def analysis_run(
    *, gateway: ModelGateway, judge: str, messages: Sequence[ChatMessage], max_tokens: int | None
) -> AnalysisDone | AnalysisFailed:
    """Run the judge (temperature 0, no tools) with at most one repair; never raises ``ProviderError``.

    Usage sums both attempts; ``ttft_ms`` is the first attempt's, ``duration_ms`` spans both.
    """
    started = time.perf_counter()
    client = gateway.client_for(judge)
    response_format = analysis_response_format() if client.supports_structured_output(judge) else None
    usage = Usage(cost=0.0)
    first_ttft: float | None = None
    conversation = list(messages)
    raw = ""
    failure: AnalysisError | None = None
    for attempt in range(2):
        progress = CallProgress()
        request = CompletionRequest(
            model=judge,
            messages=conversation,
            temperature=0,
            max_tokens=max_tokens,
            response_format=response_format,
        )
        try:
            await call_collect(client=client, request=request, progress=progress)
        except ProviderError as error:
            usage = usage + usage_priced(gateway=gateway, model=judge, progress=progress)
            code = f" ({error.status_code})" if error.status_code else ""
            return AnalysisFailed(
                reason="judge_upstream_error",
                detail=f"the judge {judge} failed{code}: {error.message}",
                raw=progress.text,
                usage=usage,
                timings=_span(started, first_ttft if attempt else progress.timings().ttft_ms),
            )
        usage = usage + usage_priced(gateway=gateway, model=judge, progress=progress)
        if attempt == 0:
            first_ttft = progress.timings().ttft_ms
        raw = progress.text
        try:
            analysis = analysis_parse(raw)
        except AnalysisError as error:
            failure = error
            conversation = judge_repair_messages(judge=messages, reply=raw, error=error.detail)
            continue
        return AnalysisDone(analysis=analysis, raw=raw, usage=usage, timings=_span(started, first_ttft))
    assert failure is not None
    return AnalysisFailed(
        reason=failure.reason,
        detail=f"{failure.detail} (after one repair attempt)",
        raw=raw,
        usage=usage,
        timings=_span(started, first_ttft),
    )


def _span(started: float, ttft_ms: float | None) -> Timings:
    return Timings(ttft_ms=ttft_ms, duration_ms=(time.perf_counter() - started) * 1000)
