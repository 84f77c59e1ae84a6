"""Forms of the Evaluations page: importing a task set and planning a run."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from apps.evaluation.grading import DEMO_GRADER
from apps.evaluation.services import MAX_CONCURRENCY
from apps.evaluation.tasksets import MAX_FILE_BYTES


class ImportForm(forms.Form):
    name = forms.CharField(max_length=120, required=False, label="Name")
    file = forms.FileField(label="DRACO-format JSONL file")

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError(f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB.")
        return upload


class RunForm(forms.Form):
    task_set = forms.IntegerField(label="Task set")
    contenders = forms.MultipleChoiceField(
        label="Presets and panels", required=False, widget=forms.CheckboxSelectMultiple
    )
    models = forms.CharField(
        label="Single models",
        required=False,
        max_length=2000,
        help_text="Model ids, separated by commas or new lines (demo/atlas runs offline).",
    )
    grader = forms.CharField(label="Grader model", max_length=200, initial=DEMO_GRADER)
    limit = forms.IntegerField(label="Tasks (a seeded sample; empty: all)", required=False, min_value=1)
    seed = forms.IntegerField(label="Seed", required=False, initial=0)
    concurrency = forms.IntegerField(label="Concurrency", min_value=1, max_value=MAX_CONCURRENCY, initial=4)
    budget = forms.DecimalField(
        label="Budget cap (USD; empty: none)", required=False, min_value=0, max_digits=10, decimal_places=2
    )

    def __init__(self, *args: Any, contender_choices: list[tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["contenders"].choices = contender_choices  # type: ignore[attr-defined]

    def contender_specs(self) -> list[str]:
        specs = list(self.cleaned_data.get("contenders") or [])
        models = re.split(r"[,\s]+", self.cleaned_data.get("models") or "")
        specs += [f"model:{model}" for model in models if model]
        return specs

    def run_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "contender_specs": self.contender_specs(),
            "grader": data["grader"],
            "limit": data.get("limit"),
            "seed": data.get("seed") or 0,
            "concurrency": data["concurrency"],
            "budget": float(data["budget"]) if data.get("budget") is not None else None,
        }


class ResumeForm(forms.Form):
    budget = forms.DecimalField(required=False, min_value=0, max_digits=10, decimal_places=2)
