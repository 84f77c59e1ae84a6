"""The panel builder's pages and htmx fragments. Views parse, call a service or selector, and render."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.fusion.schemas import MAX_PROMPT_CHARS, MAX_SEATS
from apps.panels import presenters
from apps.panels.forms import (
    BuilderInput,
    builder_action_from_post,
    builder_apply,
    builder_focus_after,
    builder_input_from_panel,
    builder_input_from_post,
)
from apps.panels.models import Panel
from apps.panels.selectors import panel_get_for, panel_get_owned, panel_list_for
from apps.panels.services import (
    PanelInvalid,
    panel_delete,
    panel_duplicate,
    panel_save,
)

SEARCH_LIMIT = 20
MAX_HISTORY_CHARS = 10_000_000


def _visible_panel(request: HttpRequest, panel_id: int) -> Panel:
    try:
        return panel_get_for(user=request.user, panel_id=panel_id)
    except Panel.DoesNotExist:
        raise Http404("No such panel") from None


def _owned_panel(request: HttpRequest, panel_id: int) -> Panel:
    try:
        return panel_get_owned(user=request.user, panel_id=panel_id)
    except Panel.DoesNotExist:
        raise Http404("No such panel of yours") from None


@login_required
@require_GET
def panel_list(request: HttpRequest) -> HttpResponse:
    panels = [presenters.panel_card(panel) for panel in panel_list_for(user=request.user)]
    return render(
        request,
        "panels/list.html",
        {
            "own_panels": [card for card in panels if not card.panel.is_preset],
            "presets": [card for card in panels if card.panel.is_preset],
        },
    )


@login_required
@require_GET
def panel_detail(request: HttpRequest, panel_id: int) -> HttpResponse:
    panel = _visible_panel(request, panel_id)
    return render(request, "panels/detail.html", {"card": presenters.panel_card(panel)})


def _builder_context(
    request: HttpRequest,
    *,
    data: BuilderInput,
    panel: Panel | None,
    errors: dict[str, str] | None = None,
    status: str = "",
    focus: str = "",
) -> dict[str, Any]:
    builder_url = reverse("panels:edit", args=[panel.pk]) if panel else reverse("panels:new")
    return {
        "panel": panel,
        "data": data,
        "seats": presenters.seat_rows(data, errors or {}, focus=focus),
        "errors": errors or {},
        "status": status,
        "focus": focus,
        "builder_url": builder_url,
        "search_url": reverse("panels:search_edit", args=[panel.pk]) if panel else reverse("panels:search"),
        "max_seats": MAX_SEATS,
        "judge_label": presenters.model_label(data.judge) if data.judge else "",
        "writer_label": presenters.model_label(data.writer) if data.writer else "",
        "option_fields": presenters.option_fields(data, errors),
        "query": "",
        "results": presenters.search_rows("", limit=SEARCH_LIMIT),
    }


def _builder(request: HttpRequest, panel: Panel | None) -> HttpResponse:
    if request.method == "GET":
        data = builder_input_from_panel(panel) if panel else BuilderInput()
        return render(request, "panels/builder.html", _builder_context(request, data=data, panel=panel))
    data = builder_input_from_post(request.POST)
    action = builder_action_from_post(request.POST)
    if action.kind != "save":
        data, status = builder_apply(data, action)
        context = _builder_context(
            request, data=data, panel=panel, status=status, focus=builder_focus_after(data, action)
        )
        context["partial"] = True
        # htmx swaps the members fragment in place; without JavaScript the whole page comes back.
        template = "panels/_members.html" if getattr(request, "htmx", False) else "panels/builder.html"
        return render(request, template, context)
    try:
        saved = panel_save(owner=request.user, data=data, panel_id=panel.pk if panel else None)
    except PanelInvalid as invalid:
        context = _builder_context(
            request, data=data, panel=panel, errors=invalid.errors, status="The panel was not saved."
        )
        # 200, like any form shown again with its errors (a 4xx would read as a broken page to the browser).
        return render(request, "panels/builder.html", context)
    except Panel.DoesNotExist:
        raise Http404("No such panel of yours") from None
    messages.success(request, f"Saved “{saved.name}”. It is in the chatroom's panel list now.")
    return redirect("panels:detail", panel_id=saved.pk)


@login_required
@require_http_methods(["GET", "POST"])
def panel_new(request: HttpRequest) -> HttpResponse:
    return _builder(request, None)


@login_required
@require_http_methods(["GET", "POST"])
def panel_edit(request: HttpRequest, panel_id: int) -> HttpResponse:
    return _builder(request, _owned_panel(request, panel_id))


@login_required
@require_GET
def model_search(request: HttpRequest, panel_id: int | None = None) -> HttpResponse:
    panel = _owned_panel(request, panel_id) if panel_id is not None else None
    query = (request.GET.get("q") or "").strip()[:100]
    results = presenters.search_rows(query, limit=SEARCH_LIMIT)
    context = {
        "query": query,
        "results": results,
        "builder_url": reverse("panels:edit", args=[panel.pk]) if panel else reverse("panels:new"),
    }
    return render(request, "panels/_search_results.html", context)


@login_required
@require_POST
def panel_duplicate_view(request: HttpRequest, panel_id: int) -> HttpResponse:
    copy = panel_duplicate(user=request.user, panel=_visible_panel(request, panel_id))
    messages.success(request, f"Made “{copy.name}”: change what you like and save.")
    return redirect("panels:edit", panel_id=copy.pk)


@login_required
@require_http_methods(["GET", "POST"])
def panel_delete_view(request: HttpRequest, panel_id: int) -> HttpResponse:
    panel = _owned_panel(request, panel_id)
    if request.method == "GET":
        return render(request, "panels/delete.html", {"panel": panel})
    try:
        panel_delete(user=request.user, panel_id=panel.pk)
    except Panel.DoesNotExist:
        raise Http404("No such panel of yours") from None
    messages.success(request, f"Deleted “{panel.name}”. Past conversations keep their copy of it.")
    return redirect("panels:list")


def _int_field(request: HttpRequest, *names: str, upper: int) -> int:
    params = request.POST if request.method == "POST" else request.GET
    for name in names:
        raw = (params.get(name) or "").strip()
        if raw.isdigit() and len(raw) < 20:
            return min(int(raw), upper)
    return 0


def _text_length(request: HttpRequest, *names: str) -> int:
    params = request.POST if request.method == "POST" else request.GET
    for name in names:
        if name in params:
            return len(params[name])
    return 0


@login_required
@require_http_methods(["GET", "POST"])
def cost_estimate(request: HttpRequest) -> HttpResponse:
    """The composer's cost fragment: the panel's typical and worst-case cost for the prompt typed so far.

    Reads ``panel`` (or ``panel_id``), the prompt (``prompt``, ``content`` or ``message``) and
    ``history_chars`` from the composer form; unknown prices are said plainly.
    """
    panel_id = _int_field(request, "panel", "panel_id", upper=2**62)
    try:
        panel: Panel | None = panel_get_for(user=request.user, panel_id=panel_id)
    except Panel.DoesNotExist:
        panel = None
    prompt_chars = min(_text_length(request, "prompt", "content", "message"), MAX_PROMPT_CHARS)
    history_chars = _int_field(request, "history_chars", upper=MAX_HISTORY_CHARS)
    context = presenters.estimate_context(
        panel=panel, prompt_chars=prompt_chars, history_chars=history_chars, user=request.user
    )
    return render(request, "panels/_estimate.html", context)
