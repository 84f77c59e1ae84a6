"""The API keys page: create (the full key shown once), list and revoke the signed-in user's keys."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from apps.accounts.api_keys import api_key_create, api_key_list_for, api_key_revoke
from apps.accounts.models import ApiKey


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=80, required=True, help_text="Where it is used, e.g. “laptop script”.")


@login_required
@require_http_methods(["GET", "POST"])
def keys_page(request: HtmxHttpRequest) -> HttpResponse:
    new_key = ""
    status = 200
    if request.method == "POST":
        form = ApiKeyForm(request.POST)
        if form.is_valid():
            _, new_key = api_key_create(user=request.user, name=form.cleaned_data["name"])
            form = ApiKeyForm()
            status = 201
        else:
            # htmx swaps only 2xx replies in; the form with its errors is what the person must see.
            status = 200 if request.htmx else 400
    else:
        form = ApiKeyForm()
    # The new key is rendered into this one response and stored nowhere: a reload does not show it again.
    return _keys_render(request, form=form, new_key=new_key, status=status)


def _keys_render(
    request: HttpRequest,
    *,
    form: ApiKeyForm,
    new_key: str = "",
    revoked: ApiKey | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "form": form,
        "keys": api_key_list_for(user=request.user),
        "new_key": new_key,
        "revoked": revoked,
    }
    response = render(request, "accounts/keys.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def key_revoke(request: HtmxHttpRequest, key_id: int) -> HttpResponse:
    """Revoke a key once the person confirmed: the page's htmx form asks first (``hx-confirm``) and posts
    ``confirm``; a post without it (no JavaScript) gets a page that asks. Revoking cannot be undone and stops
    every program using the key at once."""
    try:
        key = api_key_list_for(user=request.user).get(pk=key_id)
    except ApiKey.DoesNotExist:
        raise Http404("No such key") from None
    if request.POST.get("confirm") != "1":
        return render(request, "accounts/key_revoke_confirm.html", {"key": key})
    key = api_key_revoke(user=request.user, key_id=key.pk)
    if request.htmx:
        return _keys_render(request, form=ApiKeyForm(), revoked=key)
    messages.success(request, f"Key “{key.name}” revoked.")
    return redirect("api_keys")
