"""Contenders: what answers the tasks. A preset (``preset:budget``), a saved panel (``panel:<id or slug>``)
or a single model (``model:<id>``).

A panel answers through the engine (``run_fusion``, its web tools as its options say) and its answer is the
fused one; a single model answers in one call without tools. Both go through the provider gateway, so the
demo models work offline and a test's fake upstream stands in for OpenRouter.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from apps.fusion.calls import CallProgress, call_collect, usage_priced
from apps.fusion.engine import run_fusion
from apps.fusion.schemas import FinalDone, FusionOptions, FusionRequest, RunDone, RunFailed, SeatSpec
from apps.panels.costs import panel_estimate_cost
from apps.panels.costs import tokens_for_chars as tokens_for
from apps.panels.models import Panel
from apps.panels.runnability import panel_runnability
from apps.panels.selectors import panel_list_for
from apps.providers.base import ChatMessage, CompletionRequest, ModelGateway, ProviderError
from apps.providers.registry import Gateway
from apps.webtools.toolbox import toolbox_from_settings

KINDS = ("preset", "panel", "model")
# A single model's answer is capped like a panel's writer by default, so the two are comparable.
MODEL_MAX_TOKENS = FusionOptions().max_completion_tokens
# Estimate of a typical answer, for the budget's reservations and the estimate's low end.
TYPICAL_ANSWER_TOKENS = 800
# Tokens a grader's verdict takes, about (a JSON object with one sentence).
VERDICT_TOKENS = 60


class ContenderInvalid(Exception):
    pass


@dataclass(frozen=True)
class ContenderPlan:
    kind: str
    ref: str
    label: str
    snapshot: dict[str, Any]
    is_demo: bool

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.ref}"


def _panel_plan(panel: Panel, kind: str, ref: str, gateway: ModelGateway) -> ContenderPlan:
    runnable, reasons, _warnings = panel_runnability(panel=panel)
    if not runnable:
        raise ContenderInvalid(f"The panel {panel.name!r} cannot run here. {' '.join(reasons)}")
    snapshot = panel.snapshot()
    models = [seat["model"] for seat in snapshot["seats"]] + [snapshot["judge"], snapshot["writer"]]
    is_demo = all(gateway.is_demo(model) for model in models)
    suffix = " (preset)" if panel.is_preset else ""
    return ContenderPlan(kind, ref, f"{panel.name}{suffix}", snapshot, is_demo)


def contender_resolve(
    *, spec: str, user: AbstractBaseUser | AnonymousUser, gateway: ModelGateway
) -> ContenderPlan:
    """The contender ``spec`` names, for ``user``; ``ContenderInvalid`` saying what is wrong otherwise."""
    kind, sep, ref = spec.strip().partition(":")
    ref = ref.strip()
    if not sep or kind not in KINDS or not ref:
        raise ContenderInvalid(
            f"{spec!r} is not a contender: use preset:<slug>, panel:<id or slug> or model:<model id>."
        )
    if kind == "model":
        try:
            gateway.client_for(ref)
        except ProviderError as error:
            raise ContenderInvalid(str(error)) from None
        label = f"{ref} (demo)" if gateway.is_demo(ref) else ref
        return ContenderPlan(kind, ref, label, {}, gateway.is_demo(ref))
    panels = panel_list_for(user=user)
    if kind == "preset":
        panel = panels.filter(owner__isnull=True, slug=ref).first()
        if panel is None:
            known = ", ".join(panels.filter(owner__isnull=True).values_list("slug", flat=True))
            raise ContenderInvalid(f"No preset called {ref!r}. Presets: {known}.")
        return _panel_plan(panel, kind, ref, gateway)
    own = panels.filter(owner__isnull=False)
    panel = own.filter(pk=int(ref)).first() if ref.isdigit() else own.filter(slug=ref).first()
    if panel is None:
        raise ContenderInvalid(f"You have no saved panel {ref!r}.")
    return _panel_plan(panel, kind, str(panel.pk), gateway)


@dataclass(frozen=True)
class AnswerResult:
    text: str
    cost: float | None
    latency_ms: float
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def fusion_request_from(snapshot: dict[str, Any], prompt: str) -> FusionRequest:
    seats = [
        SeatSpec.model_validate(
            {k: seat.get(k) for k in ("seat", "model", "temperature", "system_prompt") if k in seat}
        )
        for seat in snapshot["seats"]
    ]
    raw = snapshot.get("options") or {}
    options = FusionOptions.model_validate({k: v for k, v in raw.items() if k in FusionOptions.model_fields})
    return FusionRequest(
        prompt=prompt, seats=seats, judge=snapshot["judge"], writer=snapshot["writer"], options=options
    )


async def contender_answer(
    *, kind: str, ref: str, snapshot: dict[str, Any], prompt: str, gateway: ModelGateway
) -> AnswerResult:
    """One contender's answer to one task: its text, its whole cost (every call) and its latency."""
    started = time.perf_counter()
    if kind == "model":
        progress = CallProgress()
        request = CompletionRequest(
            model=ref, messages=[ChatMessage(role="user", content=prompt)], max_tokens=MODEL_MAX_TOKENS
        )
        try:
            text = await call_collect(client=gateway.client_for(ref), request=request, progress=progress)
        except ProviderError as error:
            cost = usage_priced(gateway=gateway, model=ref, progress=progress).cost
            return AnswerResult("", cost, _ms(started), f"{ref} failed: {error.message}")
        cost = usage_priced(gateway=gateway, model=ref, progress=progress).cost
        return AnswerResult(text, cost, _ms(started))
    request_f = fusion_request_from(snapshot, prompt)
    text = ""
    async for event in run_fusion(request_f, gateway=gateway, toolbox=toolbox_from_settings()):
        if isinstance(event, FinalDone):
            text = event.content
        elif isinstance(event, RunDone):
            return AnswerResult(text, event.totals.usage.cost, _ms(started))
        elif isinstance(event, RunFailed):
            cost = event.totals.usage.cost
            return AnswerResult(event.partial_final, cost, _ms(started), f"{event.reason}: {event.message}")
    return AnswerResult(text, None, _ms(started), "the run ended without a result")


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


# --- Estimates --------------------------------------------------------------------------------------------


def call_cost(gateway: Gateway, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """A call's USD cost at catalog prices: 0 for demo models, None when the price is unknown."""
    if gateway.is_demo(model):
        return 0.0
    info = gateway.model_info(model)
    if info is None or info.prompt_price is None or info.completion_price is None:
        return None
    return float(prompt_tokens * info.prompt_price + completion_tokens * info.completion_price)


@dataclass(frozen=True)
class Estimate:
    low: float | None
    high: float | None


def answer_estimate(
    *, plan_kind: str, ref: str, snapshot: dict[str, Any], prompt: str, gateway: Gateway
) -> Estimate:
    """About what one answer costs: low = a typical answer, high = every call at its token cap."""
    if plan_kind == "model":
        context = tokens_for(len(prompt))
        low = call_cost(gateway, ref, context, TYPICAL_ANSWER_TOKENS)
        high = call_cost(gateway, ref, context, MODEL_MAX_TOKENS)
        return Estimate(low, high)
    found = panel_estimate_cost(snapshot_or_panel=snapshot, prompt_chars=len(prompt), history_chars=0)
    return Estimate(None, None) if found is None else Estimate(found.typical, found.high)
