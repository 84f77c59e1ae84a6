"""Task sets in DRACO's JSONL format: parsing and validation (no Django here; the import service saves).

One JSON object a line: ``id``, ``domain``, ``problem`` and ``answer``, the rubric as a JSON string
``{"id", "sections": [{"id", "title", "criteria": [{"id", "weight", "requirement"}]}]}`` (an object is taken
too). A criterion with a negative weight names an error: the grader's MET means the error is present.
Every bad line is reported with its number; a file with any error imports nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SAMPLE_PATH = Path(__file__).resolve().parent / "data" / "sample_tasks.jsonl"
SAMPLE_NAME = "Fusion Room sample (12 tasks)"
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_TASKS = 2000
MAX_LINE_ERRORS = 200


class RubricCriterion(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    weight: float
    requirement: str = Field(min_length=1, max_length=4000)

    @field_validator("weight")
    @classmethod
    def _weight_finite_and_nonzero(cls, value: float) -> float:
        if not math.isfinite(value) or value == 0:
            raise ValueError("weight must be a finite number other than 0")
        return value


class RubricSection(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    title: str = Field(default="", max_length=300)
    criteria: list[RubricCriterion] = Field(min_length=1)


class Rubric(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    sections: list[RubricSection] = Field(min_length=1)

    @model_validator(mode="after")
    def _has_a_positive_criterion(self) -> Rubric:
        if not any(c.weight > 0 for section in self.sections for c in section.criteria):
            raise ValueError("the rubric needs at least one criterion with a positive weight")
        ids = [c.id for section in self.sections for c in section.criteria]
        if len(ids) != len(set(ids)):
            raise ValueError("criterion ids must be unique within a rubric")
        return self


class TaskLine(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1, max_length=200)
    domain: str = Field(default="", max_length=200)
    problem: str = Field(min_length=1, max_length=32_000)
    answer: Rubric

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        # DRACO's ids are strings; a number is taken as its text.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("answer", mode="before")
    @classmethod
    def _rubric_from_json_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError as error:
                raise ValueError(f"answer is not valid JSON ({error.msg})") from None
        return value


@dataclass(frozen=True)
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


class TaskSetInvalid(Exception):
    """A file that cannot be imported; ``errors`` has every bad line."""

    def __init__(self, errors: list[LineError]) -> None:
        super().__init__("; ".join(str(e) for e in errors[:5]))
        self.errors = errors


def _validation_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(part) for part in item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def tasks_parse(text: str) -> list[TaskLine]:
    """Every task of a JSONL text; ``TaskSetInvalid`` listing every bad line (1-based) if any is wrong.

    Blank lines are skipped. Ids must be unique in the file.
    """
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise TaskSetInvalid([LineError(0, f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")])
    tasks: list[TaskLine] = []
    errors: list[LineError] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as error:
            errors.append(LineError(number, f"not valid JSON ({error.msg} at column {error.colno})"))
            continue
        if not isinstance(raw, dict):
            errors.append(LineError(number, "expected a JSON object"))
            continue
        try:
            task = TaskLine.model_validate(raw)
        except ValidationError as error:
            errors.append(LineError(number, _validation_message(error)))
            continue
        if task.id in seen:
            errors.append(LineError(number, f"id {task.id!r} already used on line {seen[task.id]}"))
            continue
        seen[task.id] = number
        tasks.append(task)
        if len(errors) >= MAX_LINE_ERRORS:
            break
    if not errors and not tasks:
        errors.append(LineError(0, "the file has no tasks"))
    if len(tasks) > MAX_TASKS:
        errors.append(LineError(0, f"more than {MAX_TASKS} tasks"))
    if errors:
        raise TaskSetInvalid(errors)
    return tasks


def text_decode(data: bytes) -> str:
    """An uploaded file's text (UTF-8, a BOM allowed); ``TaskSetInvalid`` otherwise."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise TaskSetInvalid([LineError(0, f"the file is not UTF-8 text (byte {error.start})")]) from None


def sample_text() -> str:
    return SAMPLE_PATH.read_text(encoding="utf-8")
