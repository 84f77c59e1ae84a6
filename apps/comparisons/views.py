"""Blind comparison pages and htmx actions: the composer's option, a turn's A/B block, the vote, win rates."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.comparisons import presenters, selectors, services
from apps.comparisons.models import Comparison
from apps.comparisons.services import ComparisonError
from apps.panels.models import Panel
from apps.panels.selectors import panel_get_for


def _panel_or_none(request: HttpRequest, raw: str | None) -> Panel | None:
    if not raw or not raw.isdigit():
        return None
    try:
        return panel_get_for(user=request.user, panel_id=int(raw))
    except Panel.DoesNotExist:
        return None


@login_required
@require_http_methods(["GET", "POST"])
def option(request: HttpRequest) -> HttpResponse:
    """GET: the composer's control for the chosen panel. POST: save it; the reply is its status line."""
    if request.method == "GET":
        panel = _panel_or_none(request, request.GET.get("panel"))
        return render(
            request, "comparisons/_option.html", presenters.option_context(user=request.user, panel=panel)
        )
    panel = _panel_or_none(request, request.POST.get("panel"))
    if panel is None:
        # The same words for a panel that does not exist and one that is someone else's.
        context = {"error": "That panel does not exist (or is not yours). Pick another one."}
        return render(request, "comparisons/_option_status.html", context, status=422)
    try:
        choice = services.baseline_choice_save(
            user=request.user,
            panel=panel,
            enabled=request.POST.get("baseline_enabled") == "1",
            model_id=request.POST.get("baseline_model", ""),
        )
    except ComparisonError as error:
        return render(request, "comparisons/_option_status.html", {"error": str(error)}, status=422)
    return render(
        request, "comparisons/_option_status.html", {"choice": choice, "panel": panel, "saved": True}
    )


@login_required
@require_GET
def turn_block(request: HttpRequest, turn_id: int) -> HttpResponse:
    """A turn's comparison block (it polls itself while the single model answers); empty when it has none."""
    # Someone else's turn looks like a turn without a comparison: an empty slot.
    comparison = selectors.comparison_for_turn(user=request.user, turn_id=turn_id)
    if (
        comparison is not None
        and comparison.status == Comparison.Status.RUNNING
        and services.comparisons_reap_stale(comparison_ids=[comparison.pk])
    ):
        comparison.refresh_from_db()
    context = presenters.block_context(comparison=comparison, turn_id=turn_id, interactive=True)
    return render(request, "comparisons/_block.html", context)


@login_required
@require_POST
def vote(request: HttpRequest, comparison_id: int) -> HttpResponse:
    try:
        comparison = selectors.comparison_get_for(user=request.user, comparison_id=comparison_id)
    except Comparison.DoesNotExist:
        raise Http404("No such comparison") from None
    error = ""
    status = 200
    try:
        comparison = services.comparison_vote(comparison=comparison, vote=request.POST.get("vote", ""))
    except ComparisonError as exc:
        # Shown in the block as it stands (a second vote changes nothing); htmx swaps a 422 in.
        error, status = str(exc), 422
        comparison.refresh_from_db()
    context = presenters.block_context(
        comparison=comparison, turn_id=comparison.turn_id, interactive=True, error=error
    )
    return render(request, "comparisons/_block.html", context, status=status)


@login_required
@require_GET
def win_rates(request: HttpRequest) -> HttpResponse:
    """Each panel's win rate against its single-model baselines (``comparisons/_win_rates.html``)."""
    return render(request, "comparisons/index.html")
