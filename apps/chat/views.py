"""Chatroom pages and htmx actions. Parse, call a service or selector, render a template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from apps.chat import selectors, services
from apps.chat.export import conversation_export, export_filename, export_json, export_markdown
from apps.chat.forms import RenameForm, SendForm
from apps.chat.frames import MAX_FRAME_CHARS
from apps.chat.models import Conversation, ShareLink
from apps.chat.search import SEARCH_LIMIT, conversation_search_for, search_query_clean
from apps.chat.services import ChatError
from apps.core.views import landing
from apps.fusion.schemas import MAX_PROMPT_CHARS
from apps.panels.models import Panel
from apps.panels.runnability import panel_runnability
from apps.panels.selectors import panel_get_for, panel_list_for
from apps.providers.registry import gateway_from_settings


@dataclass
class ComposerOption:
    """One option of the composer's panel chooser: ``reason`` says why it cannot run here (then it is
    disabled), ``warnings`` name models OpenRouter no longer lists (it may still run)."""

    panel: Panel
    reason: str | None
    warnings: list[str]
    is_demo: bool
    selected: bool


def _composer_options(
    user: Any, conversation: Conversation | None, chosen: int | None = None
) -> list[ComposerOption]:
    panels = list(panel_list_for(user=user))
    checks = {panel.pk: panel_runnability(panel=panel) for panel in panels}
    runnable = [panel for panel in panels if checks[panel.pk][0]]
    default = panel_default_for_page(
        panels,
        runnable,
        conversation,
        chosen,
        last_used=selectors.last_panel_id_for(user=user) if conversation is None else None,
    )
    gateway = gateway_from_settings()
    options = []
    for panel in panels:
        can_run, reasons, warnings = checks[panel.pk]
        options.append(
            ComposerOption(
                panel=panel,
                reason=None if can_run else " ".join(reasons),
                warnings=warnings,
                is_demo=all(gateway.is_demo(member.model_id) for member in panel.members.all()),
                selected=default is not None and panel.pk == default.pk,
            )
        )
    return options


def panel_default_for_page(
    panels: list[Panel],
    runnable: list[Panel],
    conversation: Conversation | None,
    chosen: int | None,
    *,
    last_used: int | None = None,
) -> Panel | None:
    """The panel the composer opens on: the one just chosen (a refused send shows it again); else the panel
    this conversation, or for a new one the person, used last, if it can run here; else the usual default
    among the panels that can run; else (nothing can run) the usual default, disabled with its reason. So
    Enter never meets a panel the person did not choose and that cannot run."""
    for panel in panels:
        if panel.pk == chosen:
            return panel
    last = conversation.last_panel_id if conversation is not None else last_used
    for panel in runnable:
        if panel.pk == last:
            return panel
    if runnable:
        return services.panel_default_for(panels=runnable)
    return services.panel_default_for(panels=panels, conversation=conversation)


def _conversation_or_404(request: HttpRequest, conversation_id: int) -> Conversation:
    try:
        return selectors.conversation_get_for(user=request.user, conversation_id=conversation_id)
    except Conversation.DoesNotExist:
        raise Http404("No such conversation") from None


def _room_context(request: HttpRequest, conversation: Conversation | None, **extra: Any) -> dict[str, Any]:
    turns = selectors.turn_states_for(conversation=conversation) if conversation else []
    return {
        "conversation": conversation,
        "conversations": selectors.conversation_list_for(user=request.user),
        "turns": turns,
        "running": any(turn.running for turn in turns),
        "panel_choices": _composer_options(request.user, conversation, extra.pop("chosen_panel", None)),
        "max_prompt_chars": MAX_PROMPT_CHARS,
        # room.js sends no frame whose UTF-8 size passes the socket's limit (apps/chat/frames.py).
        "max_frame_bytes": MAX_FRAME_CHARS,
        "share_links": selectors.share_links_for(conversation=conversation) if conversation else [],
        **extra,
    }


def home(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return landing(request)
    return render(request, "chat/room.html", _room_context(request, None))


@login_required
@require_GET
def conversation_detail(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    services.turns_reap_stale(conversation_id=conversation.pk)
    return render(request, "chat/room.html", _room_context(request, conversation))


def _send_prepare(request: HttpRequest, conversation_id: int | None) -> tuple[Conversation, Panel, str]:
    """Validate a composer post; ``ChatError`` for anything the person must fix."""
    conversation = _conversation_or_404(request, conversation_id) if conversation_id else None
    form = SendForm(request.POST)
    if not form.is_valid():
        raise ChatError(" ".join(str(e) for errors in form.errors.values() for e in errors))
    prompt = services.prompt_clean(form.cleaned_data["prompt"])
    try:
        panel = panel_get_for(user=request.user, panel_id=form.cleaned_data["panel"])
    except Panel.DoesNotExist:
        raise ChatError("That panel does not exist (or is not yours). Pick another one.") from None
    if conversation is None:
        reason = services.panel_unavailable_reason(panel=panel)
        if reason:
            raise ChatError(f"The panel {panel.name!r} cannot run here. {reason}")
        conversation = services.conversation_create(owner=request.user)
    return conversation, panel, prompt


def _send_error(request: HttpRequest, conversation_id: int | None, error: ChatError) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id) if conversation_id else None
    chosen = request.POST.get("panel")
    context = _room_context(
        request,
        conversation,
        composer_error=str(error),
        # The text comes back whole (up to the form's bound): the person shortens it rather than retypes it.
        prompt=request.POST.get("prompt", "")[: MAX_PROMPT_CHARS * 2],
        chosen_panel=int(chosen) if chosen and chosen.isdigit() else None,
    )
    return render(request, "chat/room.html", context, status=400)


async def _send(request: HttpRequest, conversation_id: int | None) -> HttpResponse:
    # Async on purpose: the run task must start on the server's event loop, which outlives this request.
    user = await request.auser()
    if not user.is_authenticated:
        return redirect(f"{reverse('login')}?next={request.path}")
    try:
        conversation, panel, prompt = await sync_to_async(_send_prepare)(request, conversation_id)
    except ChatError as error:
        return await sync_to_async(_send_error)(request, conversation_id, error)
    try:
        await services.turn_start(user=user, conversation=conversation, prompt=prompt, panel=panel)
    except ChatError as error:
        if conversation_id is None:
            # Created for this prompt: an empty conversation would only clutter the list.
            await sync_to_async(services.conversation_delete)(conversation=conversation)
        return await sync_to_async(_send_error)(request, conversation_id, error)
    return HttpResponseRedirect(reverse("chat:conversation", args=[conversation.pk]))


@require_POST
async def conversation_new(request: HttpRequest) -> HttpResponse:
    """The first prompt of a conversation: create it, start the run, show the conversation."""
    return await _send(request, None)


@require_POST
async def conversation_send(request: HttpRequest, conversation_id: int) -> HttpResponse:
    """A follow-up posted without the socket (room.js sends over the socket when it is connected)."""
    return await _send(request, conversation_id)


def _on_its_page(request: HttpRequest, conversation: Conversation) -> bool:
    """Whether an htmx request comes from the conversation's own page (where its entry is the current one)."""
    htmx = getattr(request, "htmx", None)
    current = urlsplit(htmx.current_url or "").path if htmx else ""
    return current == reverse("chat:conversation", args=[conversation.pk])


def _sidebar_entry(request: HttpRequest, conversation: Conversation, *, renamed: bool) -> HttpResponse:
    context = {
        "item": conversation,
        "conversation": conversation if _on_its_page(request, conversation) else None,
        "renamed": renamed,
    }
    return render(request, "chat/_renamed.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def conversation_rename(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    if request.method == "GET":
        return render(request, "chat/_rename_form.html", {"item": conversation})
    form = RenameForm(request.POST)
    try:
        if not form.is_valid():
            raise ChatError(" ".join(str(e) for errors in form.errors.values() for e in errors))
        services.conversation_rename(conversation=conversation, title=form.cleaned_data["title"])
    except ChatError as error:
        context = {"item": conversation, "error": str(error), "title": request.POST.get("title", "")}
        # 422: the form again with its error, which htmx swaps in (base.html's responseHandling).
        return render(request, "chat/_rename_form.html", context, status=422)
    return _sidebar_entry(request, conversation, renamed=True)


@login_required
@require_GET
def sidebar_item(request: HttpRequest, conversation_id: int) -> HttpResponse:
    return _sidebar_entry(request, _conversation_or_404(request, conversation_id), renamed=False)


@login_required
@require_POST
def conversation_delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    services.conversation_delete(conversation=conversation)
    htmx = getattr(request, "htmx", None)
    if not htmx:
        return redirect("chat:home")
    current = urlsplit(htmx.current_url or "").path
    if current == reverse("chat:conversation", args=[conversation_id]):
        return HttpResponseClientRedirect(reverse("chat:home"))
    return HttpResponse("")


def _share_panel(request: HttpRequest, conversation: Conversation, **extra: Any) -> HttpResponse:
    context = {
        "conversation": conversation,
        "share_links": selectors.share_links_for(conversation=conversation),
        "share_open": True,
        **extra,
    }
    return render(request, "chat/_share.html", context)


@login_required
@require_POST
def share_create(request: HttpRequest, conversation_id: int) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    _link, token = services.share_link_create(conversation=conversation)
    url = request.build_absolute_uri(reverse("chat:shared", args=[token]))
    return _share_panel(request, conversation, share_url=url)


@login_required
@require_POST
def share_revoke(request: HttpRequest, conversation_id: int, link_id: int) -> HttpResponse:
    conversation = _conversation_or_404(request, conversation_id)
    try:
        link = selectors.share_link_get_for(user=request.user, conversation=conversation, link_id=link_id)
    except ShareLink.DoesNotExist:
        raise Http404("No such link") from None
    services.share_link_revoke(link=link)
    return _share_panel(request, conversation)


@require_GET
def shared_conversation(request: HttpRequest, token: str) -> HttpResponse:
    """The read-only page behind a share link: no composer, no socket, nothing of the owner's beyond it."""
    try:
        conversation = selectors.shared_conversation_get(token=token)
    except Conversation.DoesNotExist:
        raise Http404("No such shared conversation") from None
    services.turns_reap_stale(conversation_id=conversation.pk)
    turns = selectors.turn_states_for(conversation=conversation)
    context = {"conversation": conversation, "turns": turns, "share_token": token}
    response = render(request, "chat/shared.html", context)
    # The token is in the URL: keep it out of Referer headers of links followed from the page.
    response["Referrer-Policy"] = "no-referrer"
    return response


EXPORT_TYPES = {"md": "text/markdown; charset=utf-8", "json": "application/json"}


def _export_response(conversation: Conversation, fmt: str) -> HttpResponse:
    if fmt not in EXPORT_TYPES:
        raise Http404("No such format")
    services.turns_reap_stale(conversation_id=conversation.pk)
    export = conversation_export(conversation=conversation)
    body = export_markdown(export) if fmt == "md" else export_json(export)
    response = HttpResponse(body, content_type=EXPORT_TYPES[fmt])
    # An ASCII slug only (export_filename), so the quoted form needs no escaping.
    response["Content-Disposition"] = f'attachment; filename="{export_filename(export, fmt)}"'
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def conversation_export_file(request: HttpRequest, conversation_id: int, fmt: str) -> HttpResponse:
    """The whole conversation as a Markdown or JSON download (the owner's)."""
    return _export_response(_conversation_or_404(request, conversation_id), fmt)


@require_GET
def shared_export_file(request: HttpRequest, token: str, fmt: str) -> HttpResponse:
    """The same download behind a share link, under the shared page's rule (a revoked link: 404)."""
    try:
        conversation = selectors.shared_conversation_get(token=token)
    except Conversation.DoesNotExist:
        raise Http404("No such shared conversation") from None
    response = _export_response(conversation, fmt)
    response["Referrer-Policy"] = "no-referrer"
    return response


@login_required
@require_GET
def conversation_search(request: HttpRequest) -> HttpResponse:
    """The sidebar's search: matching conversations (htmx swaps them in above the list), or, without htmx,
    the chatroom with them in its sidebar."""
    query = search_query_clean(request.GET.get("q"))
    context = {
        "search_query": query,
        "search_hits": conversation_search_for(user=request.user, query=query),
        "search_limit": SEARCH_LIMIT,
    }
    if getattr(request, "htmx", None):
        return render(request, "chat/_search_results.html", context)
    return render(request, "chat/room.html", _room_context(request, None, **context))
