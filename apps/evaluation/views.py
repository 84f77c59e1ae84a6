"""The Evaluations pages and actions. Parse, call a service or selector, render a template.

Starting and resuming are async views on purpose: the runner's task must start on the server's event loop,
which outlives the request (as a chatroom turn's run does).
"""

from __future__ import annotations

import csv
from typing import Any

from asgiref.sync import sync_to_async
from django.apps import apps as django_apps
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRefresh

from apps.evaluation import selectors, services
from apps.evaluation.chart import chart_build
from apps.evaluation.forms import ImportForm, ResumeForm, RunForm
from apps.evaluation.grading import DEMO_GRADER
from apps.evaluation.models import EvalRun, EvalShareLink, Task, TaskSet
from apps.evaluation.runner import run_launch, runner_for
from apps.evaluation.services import EvaluationInvalid
from apps.evaluation.tasksets import TaskSetInvalid, text_decode
from apps.panels.selectors import panel_list_for


def _contender_choices(user: Any) -> list[tuple[str, str]]:
    choices = []
    for panel in panel_list_for(user=user):
        if panel.is_preset:
            choices.append((f"preset:{panel.slug}", f"{panel.name} (preset)"))
        else:
            choices.append((f"panel:{panel.pk}", panel.name))
    return choices


def _run_form(request: HttpRequest, data: Any = None) -> RunForm:
    return RunForm(data, contender_choices=_contender_choices(request.user))


def _list_context(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    task_sets = list(selectors.tasksets_for(user=request.user))
    form = extra.pop("run_form", None)
    if form is None:
        initial = {"task_set": task_sets[0].pk} if task_sets else {}
        form = RunForm(initial=initial, contender_choices=_contender_choices(request.user))
    return {
        "task_sets": task_sets,
        "runs": selectors.runs_for(user=request.user),
        "run_form": form,
        "import_form": extra.pop("import_form", None) or ImportForm(),
        "demo_grader": DEMO_GRADER,
        **extra,
    }


@login_required
@require_GET
def evaluation_list(request: HttpRequest) -> HttpResponse:
    services.runs_reap_stale(owner=request.user.pk)
    context = _list_context(request, comparisons_installed=_comparisons_installed())
    return render(request, "evaluation/list.html", context)


@login_required
@require_POST
def taskset_import(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES)
    errors: list[str] = []
    if form.is_valid():
        upload = form.cleaned_data["file"]
        name = form.cleaned_data["name"] or upload.name.rsplit(".", 1)[0]
        try:
            text = text_decode(upload.read())
            task_set = services.taskset_import(owner=request.user, name=name, text=text)
        except TaskSetInvalid as error:
            errors = [str(line) for line in error.errors]
        else:
            return redirect(f"{reverse('evaluation:list')}?imported={task_set.pk}#new-run")
    context = _list_context(request, import_form=form, import_errors=errors)
    return render(request, "evaluation/list.html", context, status=422)


@login_required
@require_POST
def taskset_sample(request: HttpRequest) -> HttpResponse:
    services.taskset_sample_load(owner=request.user)
    return redirect(f"{reverse('evaluation:list')}#new-run")


@login_required
@require_POST
def taskset_delete(request: HttpRequest, task_set_id: int) -> HttpResponse:
    try:
        task_set = selectors.taskset_get_for(user=request.user, task_set_id=task_set_id)
    except TaskSet.DoesNotExist:
        raise Http404("No such task set") from None
    if task_set.runs.filter(status=EvalRun.Status.RUNNING).exists():
        return render(
            request,
            "evaluation/list.html",
            _list_context(request, run_error="Cancel the runs of that task set first."),
            status=422,
        )
    task_set.delete()
    return redirect("evaluation:list")


def _plan_from(request: HttpRequest) -> tuple[RunForm, services.RunPlan | None, str]:
    form = _run_form(request, request.POST)
    if not form.is_valid():
        return form, None, " ".join(str(e) for errors in form.errors.values() for e in errors)
    try:
        task_set = selectors.taskset_get_for(user=request.user, task_set_id=form.cleaned_data["task_set"])
    except TaskSet.DoesNotExist:
        return form, None, "Pick one of your task sets (load the sample set or import one)."
    try:
        plan = services.run_plan(owner=request.user, task_set=task_set, **form.run_arguments())
    except EvaluationInvalid as error:
        return form, None, str(error)
    return form, plan, ""


@login_required
@require_POST
def run_estimate(request: HttpRequest) -> HttpResponse:
    """The plan's cost estimate, shown before starting (htmx, on every change of the form)."""
    _form, plan, error = _plan_from(request)
    return render(request, "evaluation/_estimate.html", {"plan": plan, "error": error})


def _start(request: HttpRequest) -> EvalRun | HttpResponse:
    form, plan, error = _plan_from(request)
    if plan is None:
        context = _list_context(request, run_form=form, run_error=error)
        return render(request, "evaluation/list.html", context, status=422)
    if plan.budget is not None and plan.estimate_low is not None and plan.estimate_low > plan.budget:
        message = (
            f"The estimate (at least ${plan.estimate_low:.4f}) is over the ${plan.budget:.2f} budget: "
            "raise the budget or sample fewer tasks."
        )
        context = _list_context(request, run_form=form, run_error=message)
        return render(request, "evaluation/list.html", context, status=422)
    return services.run_create(owner=request.user, plan=plan)


@require_POST
async def run_start(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    if not user.is_authenticated:
        return redirect(f"{reverse('login')}?next={reverse('evaluation:list')}")
    started = await sync_to_async(_start)(request)
    if isinstance(started, HttpResponse):
        return started
    run_launch(run_id=started.pk)
    return HttpResponseRedirect(reverse("evaluation:run", args=[started.pk]))


def _run_or_404(request: HttpRequest, run_id: int) -> EvalRun:
    try:
        return selectors.run_get_for(user=request.user, run_id=run_id)
    except EvalRun.DoesNotExist:
        raise Http404("No such evaluation") from None


def _comparisons_installed() -> bool:
    # Blind comparisons from the chatroom live in their own app; its win-rate block (which reads its own
    # data) is shown here when that app is installed.
    return django_apps.is_installed("apps.comparisons")


def _results_context(run: EvalRun) -> dict[str, Any]:
    results = selectors.run_results(run=run)
    return {
        "run": run,
        "results": results,
        "chart": chart_build(results.contenders),
        "progress": selectors.run_progress(run=run),
    }


@login_required
@require_GET
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    services.runs_reap_stale(owner=request.user.pk)
    run = _run_or_404(request, run_id)
    context = {
        **_results_context(run),
        "share_links": selectors.share_links_for(run=run),
    }
    return render(request, "evaluation/run.html", context)


@login_required
@require_GET
def run_progress(request: HttpRequest, run_id: int) -> HttpResponse:
    """The live progress block, polled by htmx about every second while the run goes on."""
    services.runs_reap_stale(owner=request.user.pk)
    run = _run_or_404(request, run_id)
    if not run.is_running and request.GET.get("was") == "running":
        # Finished since the page loaded: load it again, with the results.
        return HttpResponseClientRefresh()
    return render(
        request, "evaluation/_progress.html", {"run": run, "progress": selectors.run_progress(run=run)}
    )


def _task_context(run: EvalRun, task_id: int) -> dict[str, Any]:
    try:
        task = selectors.run_task_get(run=run, task_id=task_id)
    except Task.DoesNotExist:
        raise Http404("No such task in this evaluation") from None
    results = selectors.run_results(run=run)
    ids = run.task_ids
    index = ids.index(task.pk)
    return {
        "run": run,
        "task": task,
        "results": results,
        "answers": selectors.task_detail(run=run, task=task, results=results),
        "previous_id": ids[index - 1] if index > 0 else None,
        "next_id": ids[index + 1] if index + 1 < len(ids) else None,
        "position": index + 1,
    }


@login_required
@require_GET
def run_task(request: HttpRequest, run_id: int, task_id: int) -> HttpResponse:
    run = _run_or_404(request, run_id)
    return render(request, "evaluation/task.html", _task_context(run, task_id))


def _filename(run: EvalRun, extension: str) -> str:
    return f"evaluation-{run.pk}.{extension}"


@login_required
@require_GET
def run_export_csv(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(request, run_id)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{_filename(run, "csv")}"'
    writer = csv.writer(response)
    for row in selectors.results_csv_rows(results=selectors.run_results(run=run)):
        # A cell starting with = + - @ is a formula to a spreadsheet: quote it as text.
        writer.writerow(["'" + cell if cell[:1] in {"=", "+", "-", "@"} else cell for cell in row])
    return response


@login_required
@require_GET
def run_export_json(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(request, run_id)
    data = selectors.results_json(run=run, results=selectors.run_results(run=run))
    response = JsonResponse(data, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="{_filename(run, "json")}"'
    return response


@login_required
@require_POST
def run_cancel(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(request, run_id)
    if services.run_cancel(run=run):
        runner = runner_for(run.pk)
        if runner is not None:
            runner.cancel()
    return redirect("evaluation:run", run_id=run.pk)


def _reopen(request: HttpRequest, run_id: int) -> EvalRun | HttpResponse:
    run = _run_or_404(request, run_id)
    form = ResumeForm(request.POST)
    budget = None
    if form.is_valid() and form.cleaned_data.get("budget") is not None:
        budget = float(form.cleaned_data["budget"])
    try:
        return services.run_reopen(run=run, budget=budget)
    except EvaluationInvalid as error:
        context = {**_results_context(run), "share_links": selectors.share_links_for(run=run)}
        context["resume_error"] = str(error)
        return render(request, "evaluation/run.html", context, status=422)


@require_POST
async def run_resume(request: HttpRequest, run_id: int) -> HttpResponse:
    user = await request.auser()
    if not user.is_authenticated:
        return redirect(f"{reverse('login')}?next={reverse('evaluation:list')}")
    reopened = await sync_to_async(_reopen)(request, run_id)
    if isinstance(reopened, HttpResponse):
        return reopened
    run_launch(run_id=reopened.pk)
    return HttpResponseRedirect(reverse("evaluation:run", args=[reopened.pk]))


@login_required
@require_POST
def run_delete(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(request, run_id)
    if run.is_running:
        services.run_cancel(run=run)
        runner = runner_for(run.pk)
        if runner is not None:
            runner.cancel()
    services.run_delete(run=run)
    return redirect("evaluation:list")


# --- Share links ------------------------------------------------------------------------------------------


def _share_panel(request: HttpRequest, run: EvalRun, **extra: Any) -> HttpResponse:
    context = {"run": run, "share_links": selectors.share_links_for(run=run), "share_open": True, **extra}
    return render(request, "evaluation/_share.html", context)


@login_required
@require_POST
def share_create(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run_or_404(request, run_id)
    _link, token = services.share_link_create(run=run)
    url = request.build_absolute_uri(reverse("evaluation:shared", args=[token]))
    return _share_panel(request, run, share_url=url)


@login_required
@require_POST
def share_revoke(request: HttpRequest, run_id: int, link_id: int) -> HttpResponse:
    run = _run_or_404(request, run_id)
    try:
        link = selectors.share_link_get_for(run=run, link_id=link_id)
    except EvalShareLink.DoesNotExist:
        raise Http404("No such link") from None
    services.share_link_revoke(link=link)
    return _share_panel(request, run)


def _shared_run(token: str) -> EvalRun:
    try:
        return selectors.shared_run_get(token=token)
    except EvalRun.DoesNotExist:
        raise Http404("No such shared evaluation") from None


def _no_referrer(response: HttpResponse) -> HttpResponse:
    # The token is in the URL: keep it out of Referer headers of links followed from the page.
    response["Referrer-Policy"] = "no-referrer"
    return response


@require_GET
def shared_run(request: HttpRequest, token: str) -> HttpResponse:
    """The read-only results behind a share link: no actions, nothing of the owner's beyond this run."""
    run = _shared_run(token)
    context = {**_results_context(run), "shared_token": token}
    return _no_referrer(render(request, "evaluation/shared.html", context))


@require_GET
def shared_task(request: HttpRequest, token: str, task_id: int) -> HttpResponse:
    run = _shared_run(token)
    context = {**_task_context(run, task_id), "shared_token": token}
    return _no_referrer(render(request, "evaluation/task.html", context))
