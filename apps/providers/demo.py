"""The offline demo models: a three-seat panel, a judge and a writer that need no key and no network.

- ``demo/atlas`` (a pragmatist), ``demo/birch`` (a skeptic) and ``demo/cedar`` (a thorough analyst) build
  their answers deterministically from the prompt: a hash-seeded choice among templated points, so that
  they share some points, make some points in two answers only, each make one of their own, and disagree
  on the recommendation.
- ``demo/judge`` and ``demo/writer`` answer what ``role_reply`` says: that content reads the engine's prompt
  format and writes its analysis schema, so it lives in ``apps.fusion.demo_content`` and is passed in
  (``DEMO_ROLE_REPLY``). Without it, or for any other task, they give the analyst's answer from cedar.

Everything streams word by word at ``delay`` seconds per chunk, reports usage estimated from word counts
and costs nothing. No Django here, and nothing of the engine.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import re
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

from apps.providers.base import (
    ChatMessage,
    CompletionRequest,
    Finish,
    StreamChunk,
    TextDelta,
    UnknownModelError,
    Usage,
    UsageReport,
    text_storable,
)
from apps.providers.catalog import DEMO_MODELS

PANEL = ("demo/atlas", "demo/birch", "demo/cedar")
JUDGE = "demo/judge"

_KNOWN = {info.id for info in DEMO_MODELS}


def tokens_estimate(text: str) -> int:
    """About four tokens for every three words, as English text runs with common tokenizers."""
    return math.ceil(len(text.split()) * 4 / 3)


# The whole reply of the demo judge or writer to a request, None when the request asks neither of them.
RoleReply = Callable[[CompletionRequest], "str | None"]


class DemoClient:
    """``ModelClient`` for the ``demo/...`` models; deterministic for a given request."""

    is_demo = True

    def __init__(self, delay: float = 0.02, *, role_reply: RoleReply | None = None) -> None:
        self.delay = delay
        self.role_reply = role_reply

    def supports_structured_output(self, model: str) -> bool:
        return model == JUDGE

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamChunk, None]:
        if request.model not in _KNOWN:
            raise UnknownModelError(request.model, f"No demo model is called {request.model}")
        # The reply quotes the caller's prompt, untrusted text: NULs are replaced as in any model's deltas.
        text = text_storable(demo_reply(request, role_reply=self.role_reply))
        budget = request.max_tokens
        words = re.findall(r"\s*\S+", text)
        sent: list[str] = []
        finish = "stop"
        for word in words:
            if budget is not None and tokens_estimate("".join([*sent, word])) > budget:
                finish = "length"
                break
            # Even with no delay, hand control back so concurrent streams interleave as real ones do.
            await asyncio.sleep(self.delay)
            sent.append(word)
            yield TextDelta(text=word)
        prompt_tokens = sum(tokens_estimate(message.content or "") + 4 for message in request.messages)
        completion_tokens = tokens_estimate("".join(sent))
        usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
            cost=0.0,
        )
        yield UsageReport(usage=usage)
        yield Finish(reason=finish, model=request.model)


def demo_reply(request: CompletionRequest, *, role_reply: RoleReply | None = None) -> str:
    """The whole reply of a demo model to ``request`` (``UnknownModelError`` for unknown ids).

    The judge and the writer say what ``role_reply`` says; any task other than theirs (or no
    ``role_reply``) gets the analyst's answer from cedar.
    """
    if request.model not in _KNOWN:
        raise UnknownModelError(request.model, f"No demo model is called {request.model}")
    prompt = last_user_text(request.messages)
    if request.model in PANEL:
        return panel_answer(model=request.model, prompt=prompt)
    reply = role_reply(request) if role_reply is not None else None
    return reply if reply is not None else panel_answer(model="demo/cedar", prompt=prompt)


def last_user_text(messages: Sequence[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user" and message.content:
            return message.content
    return ""


# --- The panel ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    subject: str
    # The two options of an "A or B?" question, else None.
    options: tuple[str, str] | None


_LEADS = re.compile(
    r"^(?:(?:please|so|ok|okay|hey)[, ]+)?(?:what(?:'s| is| are)? the best way to|"
    r"how (?:do|should|can|would) (?:i|we|you|one)|what (?:is|are|should)|"
    r"which (?:is|one is) (?:better|best)(?: for)?|should (?:i|we)|can you|could you|tell me about|explain|"
    r"why (?:do|does|is|are|should)|is it (?:better|worth)(?: to)?|what|how|why|which)\s+",
    re.IGNORECASE,
)
_CHOICE = re.compile(r"([\w.+#-]+)\s*,?\s+(?:or|vs\.?|versus)\s+([\w.+#-]+)", re.IGNORECASE)


def topic_parse(prompt: str) -> Topic:
    """What a question is about: its subject and, for "A or B?" questions, the two options."""
    line = " ".join(prompt.strip().split())
    first = re.split(r"(?<=[?.!])\s", line, maxsplit=1)[0]
    options = None
    choice = _CHOICE.search(first)
    if choice and choice.group(1).lower() != choice.group(2).lower():
        options = (choice.group(1).strip(".,"), choice.group(2).strip(".,?!"))
    subject = f"{options[0]} or {options[1]}" if options else _LEADS.sub("", first).rstrip("?.! ")
    words = subject.split()
    if len(words) > 12:
        subject = " ".join(words[:12]) + "…"
    return Topic(subject=subject or "your question", options=options)


_CHOICE_SHARED = [
    "Both {a} and {b} are mature, widely used and well documented; either can carry a small team a long way.",
    "Your team's existing experience with {a} or {b} matters more than most benchmark differences.",
    "Whichever you pick, keep the choice reversible by hiding it behind a thin layer of your own code.",
    "Write down the two or three requirements that really matter before comparing feature lists.",
    "Try both on a realistic slice of your own workload for a day before committing.",
]
_CHOICE_PARTIAL = [
    "{a} tends to offer more features out of the box, which saves building them yourself later.",
    "{b} is often simpler to operate day to day, which counts for a small team.",
    "Managed hosting exists for both, so operations alone need not decide it.",
    "Check how each handles major-version upgrades; a painful upgrade costs more than a missing feature.",
    "See what your framework supports best: first-class tooling for one of them saves real time.",
]
_GENERAL_SHARED = [
    "Start from a concrete goal and a way to tell whether you reached it.",
    "Begin with the smallest version that could work and improve it in short steps.",
    "Ask someone who has done it before; an hour of their time can save days of yours.",
    "Write down your constraints (time, money, skills) before weighing the options.",
]
_GENERAL_PARTIAL = [
    "Measure before and after each change, otherwise you cannot tell what helped.",
    "Expect to throw the first attempt away, and plan time for a second one.",
    "Prefer widely used, boring tools: their problems are already documented.",
    "Keep notes of decisions and their reasons; your future self will need them.",
]
# Each panel model's own points: (for "A or B?" questions, for any other question).
_UNIQUE = {
    "demo/atlas": (
        [
            "Pick what your hosting provider manages for you: fewer moving parts beat a marginal feature.",
            "Start with the default your framework's documentation uses; its answers are easier to find.",
        ],
        [
            "Set a time box and decide when it runs out, instead of researching forever.",
            "Automate the repetitive part first; it pays back fastest.",
        ],
    ),
    "demo/birch": (
        [
            "Vendor benchmarks rarely match your workload, so distrust any single number.",
            "Look at licensing and who governs the project before depending on it for years.",
            "Migrating between them later is rarely as easy as promised; count on it being hard.",
        ],
        [
            "Check whether this needs solving now at all: sometimes the best move is to wait.",
            "Be wary of advice that ignores your constraints, this advice included.",
            "Watch the cost over the long run, not only the effort of starting.",
        ],
    ),
    "demo/cedar": (
        [
            "Plan backups and a tested restore procedure from day one.",
            "Monitor latency and errors from the start, so you see regressions before your users do.",
            "Review security defaults and access control before anything goes live.",
        ],
        [
            "List the risks up front and decide what you would do if each one happened.",
            "Keep a way to roll back, so a bad step costs hours rather than weeks.",
            "Budget time for training and for bringing others up to speed.",
        ],
    ),
}


def _rng(*parts: str) -> random.Random:
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def panel_answer(*, model: str, prompt: str) -> str:
    """A demo panel model's Markdown answer: deterministic, and different in substance for each model."""
    topic = topic_parse(prompt)
    seed = " ".join(prompt.lower().split())
    shared_rng = _rng("shared", seed)
    if topic.options:
        a, b = topic.options
        shared_pool, partial_pool = _CHOICE_SHARED, _CHOICE_PARTIAL
    else:
        a, b = topic.subject, topic.subject
        shared_pool, partial_pool = _GENERAL_SHARED, _GENERAL_PARTIAL
    shared = [text.format(a=a, b=b) for text in shared_rng.sample(shared_pool, 2)]
    partial_ac, partial_bc = (text.format(a=a, b=b) for text in shared_rng.sample(partial_pool, 2))
    unique = _rng("unique", model, seed).choice(_UNIQUE[model][0 if topic.options else 1])
    pick, other = (a, b) if shared_rng.random() < 0.5 else (b, a)
    if model == "demo/atlas":
        return _atlas(topic, shared=shared, partial=[partial_ac], unique=unique, pick=pick)
    if model == "demo/birch":
        return _birch(topic, shared=shared, partial=[partial_bc], unique=unique, pick=pick, other=other)
    return _cedar(topic, shared=shared, partial=[partial_ac, partial_bc], unique=unique)


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def bullets(points: Sequence[str], *, numbered: bool = False) -> str:
    return "\n".join(f"{index}. {p}" if numbered else f"- {p}" for index, p in enumerate(points, start=1))


def _atlas(topic: Topic, *, shared: list[str], partial: list[str], unique: str, pick: str) -> str:
    if topic.options:
        verdict = f"choose {pick}; it is the pragmatic default and you can ship with it this week."
    else:
        verdict = "start today with the simplest option and adjust as you learn."
    return (
        f"**{capital(topic.subject)}**: the short, practical answer.\n\n"
        f"{bullets([*shared, *partial, unique])}\n\n"
        f"**Recommendation:** {verdict}\n"
    )


def _birch(topic: Topic, *, shared: list[str], partial: list[str], unique: str, pick: str, other: str) -> str:
    if topic.options:
        verdict = f"prefer {other} unless you can name a feature of {pick} that you need today."
    else:
        verdict = "validate the premise first, and only then invest serious effort."
    agreed = [f"{point} That much is not in dispute." for point in shared]
    return (
        f"**{capital(topic.subject)}**: before answering, it is worth questioning the premise a little.\n\n"
        "### What holds up\n"
        f"{bullets(agreed)}\n\n"
        "### What I would be careful about\n"
        f"{bullets([*partial, unique])}\n\n"
        f"**Recommendation:** {verdict}\n"
    )


def _cedar(topic: Topic, *, shared: list[str], partial: list[str], unique: str) -> str:
    if topic.options:
        a, b = topic.options
        table = (
            f"| Aspect | {a} | {b} |\n|---|---|---|\n"
            f"| Features | broader | narrower |\n| Day-to-day operation | more to tune | simpler |\n"
            f"| Community and hosting | large | large |"
        )
        verdict = (
            f"choose {a} when correctness and rich features dominate, {b} when operational simplicity does."
        )
    else:
        table = (
            "| Step | Why | Effort |\n|---|---|---|\n| Define the goal | know when you are done | low |\n"
            "| Smallest version | learn early | medium |\n| Review and adjust | avoid sunk costs | low |"
        )
        verdict = "write a short plan with milestones, then execute it step by step."
    return (
        f"## {capital(topic.subject)}: a structured look\n\n"
        "### Key points\n"
        f"{bullets([*shared, *partial, unique], numbered=True)}\n\n"
        "### Trade-offs at a glance\n"
        f"{table}\n\n"
        f"**Recommendation:** {verdict}\n"
    )
