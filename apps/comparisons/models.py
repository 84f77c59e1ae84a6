"""Blind comparisons: a panel's fused answer against one model's answer to the same prompt, voted on unseen.

A ``BaselineChoice`` is a user's "compare with a single model" option for one panel. A ``Comparison`` belongs
to one chatroom turn: the baseline model's answer (asked outside the panel, so neither the judge nor the
writer ever sees it), which of the two is shown as A (drawn at random once and kept, so a reload shows the
same order) and the owner's one vote.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class BaselineChoice(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    panel = models.ForeignKey("panels.Panel", on_delete=models.CASCADE, related_name="+")
    enabled = models.BooleanField(default=False)
    # Empty: the panel's writer, whatever it is when the turn starts.
    model_id = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "panel"], name="baselinechoice_unique_user_panel"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}/{self.panel_id} {'on' if self.enabled else 'off'} {self.model_id or 'writer'}"


class Comparison(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"

    class Vote(models.TextChoices):
        NONE = "", "Not voted"
        A = "a", "A"
        B = "b", "B"
        TIE = "tie", "Tie"

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    turn = models.OneToOneField("chat.Turn", on_delete=models.CASCADE, related_name="comparison")
    # The panel may be deleted later; its name as it ran keeps the win rates readable.
    panel = models.ForeignKey(
        "panels.Panel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    panel_name = models.CharField(max_length=80)
    model_id = models.CharField(max_length=200)
    # Drawn once when the comparison starts: True when the single model's answer is shown as A.
    baseline_is_a = models.BooleanField()
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    text = models.TextField(blank=True)
    error = models.TextField(blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    # USD; None when it cannot honestly be known (a call cut off before its usage report).
    cost = models.FloatField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    # Refreshed while the call runs: a running baseline with a stale heartbeat belongs to a process that died.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    vote = models.CharField(max_length=3, choices=Vote.choices, blank=True, default=Vote.NONE)
    voted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["owner", "panel"])]

    def __str__(self) -> str:
        return f"turn {self.turn_id} vs {self.model_id} {self.status} {self.vote or '-'}"

    @property
    def outcome(self) -> str:
        """``"panel"``, ``"baseline"`` or ``"tie"`` for the vote; ``""`` before it."""
        if self.vote == self.Vote.TIE:
            return "tie"
        if not self.vote:
            return ""
        baseline_won = (self.vote == self.Vote.A) == self.baseline_is_a
        return "baseline" if baseline_won else "panel"
