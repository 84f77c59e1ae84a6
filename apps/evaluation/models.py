"""Evaluations: task sets with their rubrics, runs of contenders over them, answers and verdicts.

The database is the source of truth of a run: the runner writes every answer and every verdict as it is
made, and the unique constraints on (run, contender, task) and (answer, criterion) are what make a resumed
run skip work already done.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class TaskSet(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="task_sets")
    name = models.CharField(max_length=120)
    # "sample" (shipped with the product) or "import" (a file the user gave).
    source = models.CharField(max_length=20, default="import")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name


class Task(models.Model):
    task_set = models.ForeignKey(TaskSet, on_delete=models.CASCADE, related_name="tasks")
    position = models.PositiveIntegerField()
    external_id = models.CharField(max_length=200)
    domain = models.CharField(max_length=200, blank=True)
    problem = models.TextField()
    # The rubric as imported (DRACO's ``answer``, decoded); its criteria are also rows below.
    rubric = models.JSONField(default=dict)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["task_set", "external_id"], name="evaltask_unique_id_per_set"),
        ]

    def __str__(self) -> str:
        return self.external_id


class Criterion(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="criteria")
    position = models.PositiveIntegerField()
    section_id = models.CharField(max_length=200)
    section_title = models.CharField(max_length=300, blank=True)
    external_id = models.CharField(max_length=200)
    # Negative: an error the answer must not make (MET means the error is present).
    weight = models.FloatField()
    requirement = models.TextField()

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return f"{self.task_id}:{self.external_id}"


class EvalRun(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        # Stopped before starting a call that could have spent past the budget cap.
        BUDGET = "budget"
        CANCELLED = "cancelled"
        # The process running it died or raised: resumable.
        INTERRUPTED = "interrupted"
        FAILED = "failed"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="eval_runs")
    task_set = models.ForeignKey(TaskSet, on_delete=models.CASCADE, related_name="runs")
    name = models.CharField(max_length=200, blank=True)
    grader = models.CharField(max_length=200)
    # The tasks this run answers, in order (all of the set's, or a seeded sample of ``limit``).
    task_ids = models.JSONField(default=list)
    limit = models.PositiveIntegerField(null=True, blank=True)
    seed = models.IntegerField(default=0)
    concurrency = models.PositiveSmallIntegerField(default=4)
    # USD; None: no cap.
    budget = models.FloatField(null=True, blank=True)
    estimate_low = models.FloatField(null=True, blank=True)
    estimate_high = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.RUNNING)
    error_message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Refreshed while the run is alive; stale while "running" means its process died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Seconds spent running, summed over every start (a resumed run's time left counts from its own pace).
    active_seconds = models.FloatField(default=0.0)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return self.name or f"Evaluation {self.pk}"

    @property
    def is_running(self) -> bool:
        return self.status == self.Status.RUNNING

    @property
    def resumable(self) -> bool:
        return self.status in {self.Status.BUDGET, self.Status.CANCELLED, self.Status.INTERRUPTED}


class Contender(models.Model):
    class Kind(models.TextChoices):
        PRESET = "preset"
        PANEL = "panel"
        MODEL = "model"

    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="contenders")
    position = models.PositiveSmallIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # What was asked for: a preset slug, a panel id, a model id.
    ref = models.CharField(max_length=200)
    label = models.CharField(max_length=200)
    # A panel's frozen snapshot (as a chat turn keeps it); {} for a single model.
    snapshot = models.JSONField(default=dict)
    is_demo = models.BooleanField(default=False)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["run", "position"], name="contender_unique_position"),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.ref}"


class Answer(models.Model):
    class Status(models.TextChoices):
        DONE = "done"
        FAILED = "failed"

    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="answers")
    contender = models.ForeignKey(Contender, on_delete=models.CASCADE, related_name="answers")
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="answers")
    status = models.CharField(max_length=10, choices=Status.choices)
    text = models.TextField(blank=True)
    error = models.TextField(blank=True)
    # USD; None: unknown (a price the catalog does not know).
    cost = models.FloatField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "contender", "task"], name="answer_unique_per_run_task"),
        ]

    def __str__(self) -> str:
        return f"{self.contender_id}:{self.task_id}"


class Verdict(models.Model):
    class Status(models.TextChoices):
        MET = "met"
        UNMET = "unmet"
        # The grader's reply was malformed twice: not counted either way.
        UNGRADED = "ungraded"

    answer = models.ForeignKey(Answer, on_delete=models.CASCADE, related_name="verdicts")
    criterion = models.ForeignKey(Criterion, on_delete=models.CASCADE, related_name="verdicts")
    status = models.CharField(max_length=10, choices=Status.choices)
    reason = models.CharField(max_length=500, blank=True)
    cost = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["answer", "criterion"], name="verdict_unique_per_criterion"),
        ]

    def __str__(self) -> str:
        return f"{self.answer_id}:{self.criterion_id} {self.status}"


class EvalShareLink(models.Model):
    run = models.ForeignKey(EvalRun, on_delete=models.CASCADE, related_name="share_links")
    # sha256 of the token; the token itself is shown to the owner once and never stored.
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"share {self.run_id} {'revoked' if self.revoked_at else 'active'}"
