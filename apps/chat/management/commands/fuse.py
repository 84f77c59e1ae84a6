"""``manage.py fuse "prompt" --preset demo``: run one fusion turn in the terminal.

The panel's answers stream in, each line labelled with its seat and model; then the judge's analysis (or
why there is none), the fused answer as it streams, and a table of tokens, cost and timings per step.
Exits non-zero when the run fails; Ctrl-C cancels every request in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.core.management.color import Style
from django.db import DatabaseError
from pydantic import ValidationError

from apps.fusion.engine import run_fusion
from apps.fusion.schemas import (
    DEFAULT_DEADLINE_S,
    Analysis,
    AnalysisDone,
    AnalysisFailed,
    FinalDelta,
    FinalDone,
    FinalStarted,
    FusionEvent,
    FusionOptions,
    FusionRequest,
    RunDone,
    RunFailed,
    RunStarted,
    SeatDelta,
    SeatDone,
    SeatFailed,
    StepStats,
    Totals,
)
from apps.panels.models import Panel
from apps.panels.presets import PRESETS
from apps.providers.base import ModelGateway
from apps.webtools.toolbox import toolbox_from_settings

# A seat's line longer than this is printed in pieces, so a model that never sends a newline still shows.
LINE_LIMIT = 160


def preset_find(slug: str) -> dict[str, Any] | None:
    """A preset as a panel snapshot: its database row (owner None) if there is one, else the shipped data."""
    try:
        panel = Panel.objects.filter(owner__isnull=True, slug=slug).prefetch_related("members").first()
    except DatabaseError:  # not migrated yet: the shipped data is the same thing
        panel = None
    if panel is not None:
        return panel.snapshot()
    spec = PRESETS.get(slug)
    if spec is None:
        return None
    return {
        "judge": spec["judge"],
        "writer": spec["writer"],
        "options": dict(spec["options"]),
        "seats": [{"seat": index, "model": model} for index, model in enumerate(spec["seats"], start=1)],
    }


def fuse_request_build(
    *,
    prompt: str,
    preset: str | None,
    panel: str | None,
    judge: str | None,
    writer: str | None,
    overrides: dict[str, Any],
) -> FusionRequest:
    """The request the command's arguments describe; ``CommandError`` saying what is wrong otherwise."""
    base: dict[str, Any] = {"seats": [], "judge": None, "writer": None, "options": {}}
    if preset:
        found = preset_find(preset)
        if found is None:
            known = ", ".join(sorted({*PRESETS, *_preset_slugs()}))
            raise CommandError(f"No preset called {preset!r}. Presets: {known}.")
        base = found
    elif not panel:
        raise CommandError("Give --preset SLUG or --panel MODEL,MODEL,... (see --help).")
    seats = base["seats"]
    if panel:
        models = [model.strip() for model in panel.split(",") if model.strip()]
        seats = [{"seat": index, "model": model} for index, model in enumerate(models, start=1)]
    if not (judge or base["judge"]):
        raise CommandError("--judge is required with --panel.")
    # The writer defaults to the judge given on the command line, else to the preset's writer.
    writer = writer or judge or base["writer"]
    judge = judge or base["judge"]
    # Preset rows also keep display data (their order) among their options: take only the engine's.
    options = {key: value for key, value in base["options"].items() if key in FusionOptions.model_fields}
    options.update({key: value for key, value in overrides.items() if value is not None})
    try:
        return FusionRequest(
            prompt=prompt,
            seats=seats,
            judge=judge,
            writer=writer,
            options=options,
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}" for item in error.errors()
        )
        raise CommandError(f"Invalid fusion request: {problems}") from error


def _preset_slugs() -> list[str]:
    try:
        return list(Panel.objects.filter(owner__isnull=True).values_list("slug", flat=True))
    except DatabaseError:
        return []


class TerminalRenderer:
    """Writes a run's events as they come: interleaved seat lines, the analysis, the final answer, a table."""

    def __init__(self, *, out: OutputWrapper, style: Style, gateway: ModelGateway) -> None:
        self.out = out
        self.style = style
        self.gateway = gateway
        self.labels: dict[int, str] = {}
        self.pending: dict[int, str] = {}
        self.judge = ""
        self.failure: RunFailed | None = None

    def write(self, text: str) -> None:
        self.out.write(text, ending="")
        self.out.flush()

    def label(self, model: str) -> str:
        return f"{model} (demo)" if self.gateway.is_demo(model) else model

    def render(self, event: FusionEvent) -> None:
        if isinstance(event, RunStarted):
            self.labels = {seat.seat: f"[{seat.seat} {self.label(seat.model)}]" for seat in event.seats}
            self.judge = self.label(event.judge)
            self.write(
                self.style.MIGRATE_HEADING(
                    f"Panel of {len(event.seats)}; judge {self.label(event.judge)}; "
                    f"writer {self.label(event.writer)}\n\n"
                )
            )
        elif isinstance(event, SeatDelta):
            self.seat_text(event.seat, event.text)
        elif isinstance(event, SeatDone):
            self.seat_flush(event.seat)
            self.write(self.style.SUCCESS(f"{self.labels[event.seat]} done\n"))
        elif isinstance(event, SeatFailed):
            self.seat_flush(event.seat)
            self.write(self.style.ERROR(f"{self.labels[event.seat]} {self.seat_failure(event)}\n"))
        elif isinstance(event, AnalysisDone):
            self.write(self.style.MIGRATE_HEADING(f"\n== Analysis by {self.judge} ==\n"))
            self.write(analysis_text(event.analysis))
        elif isinstance(event, AnalysisFailed):
            self.write(self.style.MIGRATE_HEADING(f"\n== Analysis by {self.judge} ==\n"))
            self.write(
                self.style.WARNING(
                    f"No analysis ({event.reason}): {event.detail}\n"
                    "The writer works from the panel's answers directly.\n"
                )
            )
        elif isinstance(event, FinalStarted):
            self.write(self.style.MIGRATE_HEADING(f"\n== Final answer by {self.label(event.model)} ==\n"))
        elif isinstance(event, FinalDelta):
            self.write(event.text)
        elif isinstance(event, FinalDone):
            self.write("\n" if event.content.endswith("\n") else "\n\n")
        elif isinstance(event, RunDone):
            self.write(totals_table(event.totals, label=self.label))
        elif isinstance(event, RunFailed):
            self.failure = event
            self.pending_flush()
            if event.totals.steps:
                self.write("\n" + totals_table(event.totals, label=self.label))

    def seat_failure(self, event: SeatFailed) -> str:
        if event.reason == "missing":
            return f"missing: {event.error}"
        code = f" ({event.status_code})" if event.status_code else ""
        return f"failed{code}: {event.error}"

    def seat_text(self, seat: int, text: str) -> None:
        buffer = self.pending.get(seat, "") + text
        *lines, rest = buffer.split("\n")
        while len(rest) > LINE_LIMIT:
            cut = rest.rfind(" ", 0, LINE_LIMIT)
            cut = cut if cut > 0 else LINE_LIMIT
            lines.append(rest[:cut])
            rest = rest[cut:].lstrip(" ")
        for line in lines:
            # Blank lines only space out one answer's Markdown; among interleaved seats they are noise.
            if line.strip():
                self.write(f"{self.labels[seat]} {line}\n")
        self.pending[seat] = rest

    def pending_flush(self) -> None:
        for seat in list(self.pending):
            self.seat_flush(seat)

    def seat_flush(self, seat: int) -> None:
        rest = self.pending.pop(seat, "")
        if rest.strip():
            self.write(f"{self.labels[seat]} {rest}\n")


def analysis_text(analysis: Analysis) -> str:
    """The analysis in its five sections, as plain text."""

    def section(title: str, items: list[str]) -> str:
        body = "".join(f"  - {item}\n" for item in items) or "  (none)\n"
        return f"{title}\n{body}"

    contradictions = [
        c.topic + "".join(f"\n      {s.model}: {s.stance}" for s in c.stances)
        for c in analysis.contradictions
    ]
    return "".join(
        [
            section("Consensus", analysis.consensus),
            section("Contradictions", contradictions),
            section(
                "Partial coverage", [f"{p.point} ({', '.join(p.models)})" for p in analysis.partial_coverage]
            ),
            section("Unique insights", [f"{u.model}: {u.insight}" for u in analysis.unique_insights]),
            section("Blind spots", analysis.blind_spots),
        ]
    )


def _cost(value: float | None) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def _seconds(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f} s"


def totals_table(totals: Totals, *, label: Callable[[str], str] = str) -> str:
    """Tokens in/out, cost, time to first token and duration per step, then the total."""

    def step_name(step: StepStats) -> str:
        return f"seat {step.seat}" if step.role == "seat" else step.role

    rows = [("Step", "Model", "Status", "Tokens in", "Tokens out", "Cost", "TTFT", "Duration")]
    for step in totals.steps:
        rows.append(
            (
                step_name(step),
                label(step.model),
                step.status,
                str(step.usage.prompt_tokens),
                str(step.usage.completion_tokens),
                _cost(step.usage.cost),
                _seconds(step.timings.ttft_ms),
                _seconds(step.timings.duration_ms),
            )
        )
    total_cost = _cost(totals.usage.cost)
    if totals.usage.cost is None:
        total_cost = f"unknown (at least ${totals.known_cost:.6f})"
    rows.append(
        (
            "total",
            "",
            "",
            str(totals.usage.prompt_tokens),
            str(totals.usage.completion_tokens),
            total_cost,
            "",
            _seconds(totals.duration_ms),
        )
    )
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines) + "\n"


class Command(BaseCommand):
    help = (
        "Run one fusion turn in the terminal: the panel's answers stream in, then the judge's analysis, "
        "the fused answer and a table of tokens, cost and timings."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prompt", help="the question to put to the panel")
        parser.add_argument("--preset", help="a preset panel's slug, e.g. demo or quality")
        parser.add_argument("--panel", help="comma-separated panel model ids (overrides the preset's)")
        parser.add_argument("--judge", help="the judge model (overrides the preset's)")
        parser.add_argument("--writer", help="the writer model (default: the judge)")
        parser.add_argument(
            "--deadline",
            type=float,
            help="seconds after which the judge starts anyway "
            f"(default: the preset's, else {DEFAULT_DEADLINE_S:g} s)",
        )
        parser.add_argument("--quorum", type=int, help="start the judge once this many seats are done")
        parser.add_argument("--temperature", type=float, help="panel temperature")
        parser.add_argument("--max-tokens", type=int, help="max completion tokens per call")

    def handle(self, *args: Any, **options: Any) -> None:
        from apps.providers.registry import gateway_from_settings

        request = fuse_request_build(
            prompt=options["prompt"],
            preset=options["preset"],
            panel=options["panel"],
            judge=options["judge"],
            writer=options["writer"],
            overrides={
                "deadline_s": options["deadline"],
                "quorum": options["quorum"],
                "temperature": options["temperature"],
                "max_completion_tokens": options["max_tokens"],
            },
        )
        gateway = gateway_from_settings()
        renderer = TerminalRenderer(out=self.stdout, style=self.style, gateway=gateway)
        try:
            asyncio.run(_fuse(request=request, gateway=gateway, renderer=renderer))
        except KeyboardInterrupt:
            # asyncio.run has already cancelled the run (and so every request in flight) by now.
            renderer.pending_flush()
            raise CommandError("Cancelled.", returncode=130) from None
        if renderer.failure is not None:
            failure = renderer.failure
            raise CommandError(f"The run failed ({failure.reason}): {failure.message}")


async def _fuse(*, request: FusionRequest, gateway: ModelGateway, renderer: TerminalRenderer) -> None:
    from apps.providers.http import shared_client_close

    try:
        async for event in run_fusion(request, gateway=gateway, toolbox=toolbox_from_settings()):
            renderer.render(event)
    finally:
        await shared_client_close()
