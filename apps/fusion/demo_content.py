"""What the offline demo judge and writer say: the demo client streams it, this module writes it.

It reads the engine's own prompt format (the ``<<<ANSWER`` blocks, the question, the analysis block) and
answers with the engine's analysis schema, which is why it lives here and not in ``apps.providers``: the
gateway is given ``role_reply`` through the ``DEMO_ROLE_REPLY`` setting and hands it to ``DemoClient``.

- ``demo/judge`` reads the delimited answer blocks it is given and computes a real analysis from them
  (points matched across answers by word overlap), as JSON; asked to repair, it answers again.
- ``demo/writer`` writes a fused answer from the analysis in its prompt, or from the raw answers when
  the prompt says no analysis is available.

The judge and the writer recognise each other's task, so either can do both (as one model may be judge and
writer of a real run).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence

from pydantic import ValidationError

from apps.fusion.prompts import (
    ANALYSIS_CLOSE,
    ANALYSIS_OPEN,
    NO_ANALYSIS,
    PanelAnswerText,
    answer_blocks_parse,
    answer_labels,
)
from apps.fusion.schemas import Analysis, Contradiction, PartialCoverage, Stance, UniqueInsight
from apps.providers.base import ChatMessage, CompletionRequest
from apps.providers.demo import bullets, capital, last_user_text, topic_parse


def role_reply(request: CompletionRequest) -> str | None:
    """The whole reply of the demo judge or writer to ``request``; None when it asks neither task."""
    prompt = last_user_text(request.messages)
    if ANALYSIS_OPEN in prompt or NO_ANALYSIS in prompt:
        return writer_answer(request.messages)
    if any(m.role == "user" and answer_blocks_parse(m.content or "") for m in request.messages):
        text = judge_analysis(request.messages).model_dump_json(indent=2)
        # Without structured output, answer the way many chat models do: JSON in a code fence.
        return text if request.response_format else f"```json\n{text}\n```"
    return None


def question_parse(text: str) -> str:
    """The question inside a judge or writer message ('' if none)."""
    match = re.search(r"<<<QUESTION>>>\n(.*?)\n<<<END QUESTION>>>", text, re.DOTALL)
    return match.group(1) if match else ""


def analysis_block_parse(text: str) -> str | None:
    """The analysis JSON text inside a writer message, or None when the message has none."""
    start = text.find(ANALYSIS_OPEN)
    end = text.find(ANALYSIS_CLOSE, start + 1)
    if start < 0 or end < 0:
        return None
    return text[start + len(ANALYSIS_OPEN) : end].strip()


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
    prompt = last_user_text(messages)
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
    sections = [f"## {capital(subject)}: the fused answer"]
    if analysis.contradictions:
        sections.append("The panel agrees on the essentials and splits on one question, resolved below.")
    else:
        sections.append("The panel broadly agrees; here is the combined picture.")
    if analysis.consensus:
        sections.append("### What everyone agrees on\n" + bullets(analysis.consensus))
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
        sections.append("### Also worth knowing\n" + bullets(extra))
    if analysis.blind_spots:
        sections.append(
            "### What no answer covered\n"
            + bullets([f"{spot}: check it before you decide." for spot in analysis.blind_spots])
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
        f"## {capital(subject)}",
        f"_No analysis was available{reason}, so this answer comes straight from the panel's answers._",
    ]
    labels = answer_labels(answers)
    summary = []
    for answer in answers:
        points, recommendation = points_parse(answer.content)
        gist = recommendation or (points[0] if points else "no clear point")
        summary.append(f"**{labels[answer.seat]}**: {gist}")
    lines.append("### What each answer recommends\n" + bullets(summary))
    lines.append("Where they differ, prefer the advice that matches your constraints most closely.")
    return "\n\n".join(lines) + "\n"
