"""Conversations, their turns, each seat's answer and share links. The database is the source of truth."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Conversation(models.Model):
    class Source(models.TextChoices):
        WEB = "web", "Chatroom"
        API = "api", "API"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=8, choices=Source.choices, default=Source.WEB)
    # The panel the composer offers next time: the one last sent with in this conversation.
    last_panel = models.ForeignKey(
        "panels.Panel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-updated_at", "-pk"]
        indexes = [models.Index(fields=["owner", "-updated_at"])]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class Turn(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"
        INTERRUPTED = "interrupted"

    class Phase(models.TextChoices):
        PANEL = "panel"
        ANALYSIS = "analysis"
        WRITING = "writing"
        FINISHED = "finished"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    # Versions of one place in the conversation share its position: a regenerated or edited turn is a new
    # version there, the earlier ones are kept. Exactly one version of a position is shown; the page, the
    # history sent to the models for later turns and the exports read the shown ones.
    position = models.PositiveIntegerField()
    version = models.PositiveSmallIntegerField(default=1)
    shown = models.BooleanField(default=True)
    prompt = models.TextField()
    panel = models.ForeignKey(
        "panels.Panel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Frozen copy of the panel as it ran (Panel.snapshot()).
    panel_snapshot = models.JSONField(default=dict)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    phase = models.CharField(max_length=12, choices=Phase.choices, default=Phase.PANEL)
    # The validated analysis (Analysis.model_dump()) or None on the degraded path.
    analysis = models.JSONField(null=True, blank=True)
    analysis_raw = models.TextField(blank=True)
    # Set on the degraded path: one of the brief's judge_* reasons, plus a detail line.
    analysis_error = models.CharField(max_length=40, blank=True)
    analysis_error_detail = models.TextField(blank=True)
    final_text = models.TextField(blank=True)
    failure_reason = models.CharField(max_length=40, blank=True)
    error_message = models.TextField(blank=True)
    # Totals.model_dump(): per-step usage and timings, summed usage, duration.
    totals = models.JSONField(default=dict, blank=True)
    cost = models.FloatField(null=True, blank=True)
    # Where its run listens and when it last showed life: a running turn whose heartbeat is stale belongs to
    # a process that died, and is marked interrupted. The channel is the run recorder's own (snapshot and
    # cancel requests go there, from whichever process): a channel-layer name, at most 100 characters by
    # the Channels spec (Redis ones run past 64).
    recorder_channel = models.CharField(max_length=100, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["conversation_id", "position", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["conversation", "position", "version"], name="turn_unique_position_version"
            ),
            models.UniqueConstraint(
                fields=["conversation", "position"],
                condition=models.Q(shown=True),
                name="turn_one_shown_per_position",
            ),
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"{self.conversation_id}/{self.position}v{self.version} {self.status}"


class PanelAnswer(models.Model):
    class Status(models.TextChoices):
        WAITING = "waiting"
        STREAMING = "streaming"
        DONE = "done"
        FAILED = "failed"
        MISSING = "missing"
        CANCELLED = "cancelled"

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="answers")
    seat = models.PositiveSmallIntegerField()
    model_id = models.CharField(max_length=200)
    content = models.TextField(blank=True)
    # A reasoning model's streamed reasoning (shown folded in its column; not part of its answer).
    reasoning = models.TextField(blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.WAITING)
    error = models.TextField(blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.FloatField(null=True, blank=True)
    # The tokens (and cost) are estimated from the streamed text: the stream was cut before the provider
    # reported usage (a cancelled run).
    usage_estimated = models.BooleanField(default=False)
    ttft_ms = models.FloatField(null=True, blank=True)
    duration_ms = models.FloatField(null=True, blank=True)
    sources = models.JSONField(default=list, blank=True)
    # Web tool calls the seat made, in order: [{"id", "name", "detail", "status", "result"}].
    tool_calls = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["turn_id", "seat"]
        constraints = [models.UniqueConstraint(fields=["turn", "seat"], name="panelanswer_unique_seat")]

    def __str__(self) -> str:
        return f"{self.turn_id}#{self.seat} {self.model_id}"


class ShareLink(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="share_links")
    # sha256 of the token; the token itself is shown to the owner once and never stored.
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"share {self.conversation_id} {'revoked' if self.revoked_at else 'active'}"
