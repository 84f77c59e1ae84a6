"""Panels: the read-only presets (owner is None) and each user's saved custom panels."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models


class Panel(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="panels"
    )
    name = models.CharField(max_length=80)
    slug = models.SlugField(max_length=80)
    description = models.CharField(max_length=300, blank=True)
    judge_model = models.CharField(max_length=200)
    writer_model = models.CharField(max_length=200)
    # Panel options, validated by apps.fusion.schemas.FusionOptions: temperature, deadline_s, quorum,
    # max_completion_tokens, max_tool_calls.
    options = models.JSONField(default=dict, blank=True)
    # Presets only: their place in the chooser, and OpenRouter's name for the same preset (plugin "preset").
    preset_order = models.PositiveSmallIntegerField(null=True, blank=True)
    openrouter_preset = models.CharField(max_length=40, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["owner_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="panel_unique_name_per_owner"),
            models.UniqueConstraint(fields=["owner", "slug"], name="panel_unique_slug_per_owner"),
            models.UniqueConstraint(
                fields=["slug"], condition=models.Q(owner__isnull=True), name="panel_unique_preset_slug"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_preset(self) -> bool:
        return self.owner_id is None

    def snapshot(self) -> dict[str, Any]:
        """The frozen copy a turn keeps, so editing the panel later never rewrites history."""
        return {
            "panel_id": self.pk,
            "name": self.name,
            "slug": self.slug,
            "judge": self.judge_model,
            "writer": self.writer_model,
            "options": dict(self.options),
            "seats": [
                {
                    "seat": index,
                    "model": member.model_id,
                    "temperature": member.temperature,
                    "system_prompt": member.system_prompt or None,
                }
                for index, member in enumerate(self.members.all(), start=1)
            ],
        }


class PanelMember(models.Model):
    panel = models.ForeignKey(Panel, on_delete=models.CASCADE, related_name="members")
    position = models.PositiveSmallIntegerField()
    model_id = models.CharField(max_length=200)
    temperature = models.FloatField(null=True, blank=True)
    system_prompt = models.TextField(blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["panel", "position"], name="panelmember_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.panel_id}#{self.position} {self.model_id}"
