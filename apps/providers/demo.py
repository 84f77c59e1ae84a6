"""The offline demo models: a three-seat panel, a judge and a writer that need no key and no network.

- ``demo/atlas`` (a pragmatist), ``demo/birch`` (a skeptic) and ``demo/cedar`` (a thorough analyst) build
  their answers deterministically from the prompt: a hash-seeded choice among templated points, so that
  they share some points, make some points in two answers only, each make one of their own, and disagree
  on the recommendation.
- ``demo/judge`` reads the delimited answer blocks it is given and computes a real analysis from them
  (points matched across answers by word overlap), as JSON; asked to repair, it answers again.
- ``demo/writer`` writes a fused answer from the analysis in its prompt, or from the raw answers when
  the prompt says no analysis is available.

Everything streams word by word at ``delay`` seconds per chunk, reports usage estimated from word counts
and costs nothing. No Django here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass

from pydantic import ValidationError

from apps.fusion.prompts import (
    ANALYSIS_OPEN,
    NO_ANALYSIS,
    PanelAnswerText,
    analysis_block_parse,
    answer_blocks_parse,
    answer_labels,
    question_parse,
)
from apps.fusion.schemas import Analysis, Contradiction, PartialCoverage, Stance, UniqueInsight
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
from apps.providers.catalog import ModelInfo

PANEL = ("demo/atlas", "demo/birch", "demo/cedar")
JUDGE = "demo/judge"

DEMO_MODELS: list[ModelInfo] = [
    ModelInfo(
        id=model_id,
        name=name,
        context_length=32_768,
        prompt_price=0.0,
        completion_price=0.0,
        supported_parameters=parameters,
        provider="demo",
        is_demo=True,
    )
    for model_id, name, parameters in (
        ("demo/atlas", "Atlas (demo)", ["temperature", "max_tokens"]),
        ("demo/birch", "Birch (demo)", ["temperature", "max_tokens"]),
        ("demo/cedar", "Cedar (demo)", ["temperature", "max_tokens"]),
        (
            "demo/judge",
            "Judge (demo)",
            ["temperature", "max_tokens", "response_format", "structured_outputs"],
        ),
        ("demo/writer", "Writer (demo)", ["temperature", "max_tokens"]),
    )
]
_KNOWN = {info.id for info in DEMO_MODELS}


def tokens_estimate(text: str) -> int:
    """About four tokens for every three words, as English text runs with common tokenizers."""
    return math.ceil(len(text.split()) * 4 / 3)


class DemoClient:
    """``ModelClient`` for the ``demo/...`` models; deterministic for a given request."""

    is_demo = True

    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay

    def supports_structured_output(self, model: str) -> bool:
        return model == JUDGE

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamChunk, None]:
        if request.model not in _KNOWN:
            raise UnknownModelError(request.model, f"No demo model is called {request.model}")
        # The reply quotes the caller's prompt, untrusted text: NULs are replaced as in any model's deltas.
        text = text_storable(demo_reply(request))
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


def demo_reply(request: CompletionRequest) -> str:
    """The whole reply of a demo model to ``request`` (``UnknownModelError`` for unknown ids).

    The judge and the writer recognise each other's task, so either can do both (as one model may be
    judge and writer of a real run); any task other than theirs gets the analyst's answer from cedar.
    """
    if request.model not in _KNOWN:
        raise UnknownModelError(request.model, f"No demo model is called {request.model}")
    prompt = _last_user_text(request.messages)
    if request.model in PANEL:
        return panel_answer(model=request.model, prompt=prompt)
    if ANALYSIS_OPEN in prompt or NO_ANALYSIS in prompt:
        return writer_answer(request.messages)
    if any(m.role == "user" and answer_blocks_parse(m.content or "") for m in request.messages):
        text = judge_analysis(request.messages).model_dump_json(indent=2)
        # Without structured output, answer the way many chat models do: JSON in a code fence.
        return text if request.response_format else f"```json\n{text}\n```"
    return panel_answer(model="demo/cedar", prompt=prompt)


def _last_user_text(messages: Sequence[ChatMessage]) -> str:
    for message in reversed(messages):
        if message.role == "user" and message.content:
            return message.content
    return ""


# --- The panel ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Topic:
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


def topic_parse(prompt: str) -> _Topic:
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
    return _Topic(subject=subject or "your question", options=options)


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


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _bullets(points: Sequence[str], *, numbered: bool = False) -> str:
    return "\n".join(f"{index}. {p}" if numbered else f"- {p}" for index, p in enumerate(points, start=1))


def _atlas(topic: _Topic, *, shared: list[str], partial: list[str], unique: str, pick: str) -> str:
    if topic.options:
        verdict = f"choose {pick}; it is the pragmatic default and you can ship with it this week."
    else:
        verdict = "start today with the simplest option and adjust as you learn."
    return (
        f"**{_capital(topic.subject)}**: the short, practical answer.\n\n"
        f"{_bullets([*shared, *partial, unique])}\n\n"
        f"**Recommendation:** {verdict}\n"
    )


def _birch(
    topic: _Topic, *, shared: list[str], partial: list[str], unique: str, pick: str, other: str
) -> str:
    if topic.options:
        verdict = f"prefer {other} unless you can name a feature of {pick} that you need today."
    else:
        verdict = "validate the premise first, and only then invest serious effort."
    agreed = [f"{point} That much is not in dispute." for point in shared]
    return (
        f"**{_capital(topic.subject)}**: before answering, it is worth questioning the premise a little.\n\n"
        "### What holds up\n"
        f"{_bullets(agreed)}\n\n"
        "### What I would be careful about\n"
        f"{_bullets([*partial, unique])}\n\n"
        f"**Recommendation:** {verdict}\n"
    )


def _cedar(topic: _Topic, *, shared: list[str], partial: list[str], unique: str) -> str:
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
        f"## {_capital(topic.subject)}: a structured look\n\n"
        "### Key points\n"
        f"{_bullets([*shared, *partial, unique], numbered=True)}\n\n"
        "### Trade-offs at a glance\n"
        f"{table}\n\n"
        f"**Recommendation:** {verdict}\n"
    )


# --- The judge ------------------------------------------------------------------------------------------

# What a good answer would usually touch on; the judge reports those no answer mentions as blind spots.
CONSIDERATIONS: list[tuple[str, tuple[str, ...]]] = [
    ("Backups and a tested way to restore them", ("backup", "restore")),
    ("Security defaults and access control", ("security", "access control", "authentication")),
    ("Licensing and the governance of the project", ("licens", "governance")),
    ("Monitoring and observability once it is live", ("monitor", "observab")),
    ("The cost of running it over several years", ("cost", "budget", "price")),
    ("Training and onboarding time for the team", ("training", "onboarding", "learning curve")),
    (
        "Legal and data-protection obligations (such as GDPR)",
        ("gdpr", "compliance", "data-protection", "privacy"),
    ),
    ("Accessibility for people with disabilities", ("accessib",)),
]
_STOPWORDS = frozenset(
    re.findall(
        r"\w+",
        """a an and are as at be before both but by can do each either for from has have how i if in is it its
        just more most much no not of on once one only or so than that the their them then there they this to
        too was we what when which while who will with you your""",
    )
)
_MATCH_THRESHOLD = 0.5


def _words(text: str) -> frozenset[str]:
    return frozenset(
        w for w in re.findall(r"[a-z0-9+#]+", text.lower()) if w not in _STOPWORDS and len(w) > 1
    )


def _similarity(left: frozenset[str], right: frozenset[str]) -> float:
    if not left or not right:
        return 0.0
    return len(left & right) / len(left | right)


def _plain(text: str) -> str:
    return re.sub(r"[*_`]+", "", text).strip()


def points_parse(content: str) -> tuple[list[str], str | None]:
    """An answer's points (its list items, else its sentences) and its recommendation line, if any."""
    points: list[str] = []
    sentences: list[str] = []
    recommendation = None
    in_code = False
    for raw in content.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            in_code = not in_code
            continue
        if in_code or not line or line.startswith(("#", "|")):
            continue
        plain = _plain(line)
        found = re.match(r"(?i)(?:recommendation|bottom line|verdict)\s*:\s*(.+)", plain)
        if found:
            recommendation = found.group(1).strip()
            continue
        item = re.match(r"(?:[-*+]|\d+[.)])\s+(.+)", plain)
        if item:
            points.append(item.group(1).strip())
        else:
            sentences.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+", plain) if len(s.split()) >= 5)
    return (points or sentences), recommendation


def judge_analysis(messages: Sequence[ChatMessage]) -> Analysis:
    """The analysis of the answers in the last user message that has answer blocks."""
    answers: list[PanelAnswerText] = []
    question = ""
    for message in reversed(messages):
        if message.role == "user" and message.content and (found := answer_blocks_parse(message.content)):
            answers, question = found, question_parse(message.content)
            break
    return analysis_compute(answers=answers, question=question)


def analysis_compute(*, answers: Sequence[PanelAnswerText], question: str = "") -> Analysis:
    """Compare the answers: shared points, split recommendations, points of some, of one, of none."""
    labels = answer_labels(answers)
    clusters: list[tuple[frozenset[str], str, list[str]]] = []  # (words, first wording, labels)
    recommendations: list[tuple[str, str]] = []
    for answer in answers:
        label = labels[answer.seat]
        points, recommendation = points_parse(answer.content)
        if recommendation:
            recommendations.append((label, recommendation))
        for point in points:
            words = _words(point)
            for cluster_words, _, members in clusters:
                if label not in members and _similarity(words, cluster_words) >= _MATCH_THRESHOLD:
                    members.append(label)
                    break
            else:
                clusters.append((words, point, [label]))

    count = len(answers)
    most = max(2, math.ceil(count * 0.75))
    consensus = [text for _, text, members in clusters if len(members) >= most]
    partial = [
        PartialCoverage(models=members, point=text)
        for _, text, members in clusters
        if 2 <= len(members) < most
    ]
    unique: list[UniqueInsight] = []
    if count > 1:
        unique = [
            UniqueInsight(model=members[0], insight=text)
            for _, text, members in clusters
            if len(members) == 1
        ]

    contradictions = []
    distinct = {_words(stance) for _, stance in recommendations}
    if len(recommendations) >= 2 and not _all_similar(list(distinct)):
        topic = topic_parse(question) if question else None
        name = f"{topic.options[0]} or {topic.options[1]}" if topic and topic.options else None
        contradictions.append(
            Contradiction(
                topic=name or "What to recommend",
                stances=[Stance(model=label, stance=stance) for label, stance in recommendations],
            )
        )

    everything = " ".join(answer.content.lower() for answer in answers)
    blind = [name for name, keys in CONSIDERATIONS if not any(key in everything for key in keys)][:2]
    return Analysis(
        consensus=consensus,
        contradictions=contradictions,
        partial_coverage=partial,
        unique_insights=unique,
        blind_spots=blind if answers else ["No panel answer was provided to compare."],
    )


def _all_similar(groups: list[frozenset[str]]) -> bool:
    return all(_similarity(groups[0], other) >= 0.6 for other in groups[1:])


# --- The writer -----------------------------------------------------------------------------------------


def writer_answer(messages: Sequence[ChatMessage]) -> str:
    """A fused Markdown answer from the analysis in the prompt, or from the raw answers without one."""
    prompt = _last_user_text(messages)
    question = question_parse(prompt)
    answers = answer_blocks_parse(prompt)
    analysis = None
    block = analysis_block_parse(prompt)
    if block is not None:
        try:
            analysis = Analysis.model_validate(json.loads(block))
        except (ValueError, ValidationError):
            analysis = None
    subject = topic_parse(question).subject if question else "your question"
    if analysis is None:
        return _writer_degraded(prompt=prompt, subject=subject, answers=answers)
    return _writer_fused(subject=subject, analysis=analysis, answers=answers)


def _writer_fused(*, subject: str, analysis: Analysis, answers: Sequence[PanelAnswerText]) -> str:
    sections = [f"## {_capital(subject)}: the fused answer"]
    if analysis.contradictions:
        sections.append("The panel agrees on the essentials and splits on one question, resolved below.")
    else:
        sections.append("The panel broadly agrees; here is the combined picture.")
    if analysis.consensus:
        sections.append("### What everyone agrees on\n" + _bullets(analysis.consensus))
    for contradiction in analysis.contradictions:
        stances = "\n".join(f"- **{s.model}**: {s.stance}" for s in contradiction.stances)
        first = contradiction.stances[0]
        resolution = (
            f"These positions hold under different conditions. Take {first.model}'s line as the default, "
            "and switch when the caveats raised by the others apply to you: that is where the answers "
            "really differ, not in the facts."
        )
        sections.append(f"### Where they disagree\n**{contradiction.topic}**\n\n{stances}\n\n{resolution}")
    extra = [f"{item.insight} (raised by {item.model})" for item in analysis.unique_insights]
    extra += [f"{item.point} (raised by {', '.join(item.models)})" for item in analysis.partial_coverage]
    if extra:
        sections.append("### Also worth knowing\n" + _bullets(extra))
    if analysis.blind_spots:
        sections.append(
            "### What no answer covered\n"
            + _bullets([f"{spot}: check it before you decide." for spot in analysis.blind_spots])
        )
    lead = analysis.consensus[0] if analysis.consensus else "Decide from your own constraints."
    sections.append(f"**Bottom line:** {lead} Based on {len(answers)} panel answers.")
    return "\n\n".join(sections) + "\n"


def _writer_degraded(*, prompt: str, subject: str, answers: Sequence[PanelAnswerText]) -> str:
    reason = ""
    if NO_ANALYSIS in prompt:
        found = re.search(r"could not be used \((.*?)\)\. Compare", prompt, re.DOTALL)
        reason = f" ({found.group(1).split(':', 1)[0]})" if found else ""
    lines = [
        f"## {_capital(subject)}",
        f"_No analysis was available{reason}, so this answer comes straight from the panel's answers._",
    ]
    labels = answer_labels(answers)
    summary = []
    for answer in answers:
        points, recommendation = points_parse(answer.content)
        gist = recommendation or (points[0] if points else "no clear point")
        summary.append(f"**{labels[answer.seat]}**: {gist}")
    lines.append("### What each answer recommends\n" + _bullets(summary))
    lines.append("Where they differ, prefer the advice that matches your constraints most closely.")
    return "\n\n".join(lines) + "\n"
