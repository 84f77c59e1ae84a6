"""DRACO-format import: every bad line reported with its number, nothing imported from a file with errors;
the shipped sample set is valid, varied, and has negative criteria."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import User

from apps.evaluation.models import Criterion, Task, TaskSet
from apps.evaluation.services import taskset_import, taskset_sample_load
from apps.evaluation.tasksets import TaskSetInvalid, sample_text, tasks_parse


def rubric(*criteria: tuple[str, float, str], section: str = "factual-accuracy") -> str:
    return json.dumps(
        {
            "id": "r",
            "sections": [
                {
                    "id": section,
                    "title": "Factual accuracy",
                    "criteria": [{"id": i, "weight": w, "requirement": r} for i, w, r in criteria],
                }
            ],
        }
    )


def line(task_id: str, answer: object = None, **extra: object) -> str:
    data = {
        "id": task_id,
        "domain": "science",
        "problem": "Why is the sky blue?",
        "answer": answer
        if answer is not None
        else rubric(("c1", 2, "Mentions Rayleigh"), ("c2", -1, "Blames the ocean")),
        **extra,
    }
    return json.dumps(data)


def test_a_valid_file_parses_with_the_rubric_decoded_from_its_json_string() -> None:
    tasks = tasks_parse(line("t1") + "\n\n" + line("t2") + "\n")

    assert [task.id for task in tasks] == ["t1", "t2"]
    criteria = tasks[0].answer.sections[0].criteria
    assert [(c.id, c.weight) for c in criteria] == [("c1", 2), ("c2", -1)]


def test_every_bad_line_is_reported_with_its_number() -> None:
    text = "\n".join(
        [
            line("ok"),
            "{not json",
            line("no-problem", problem=""),
            line("bad-rubric", answer='{"sections": []}'),
            line("ok"),  # a duplicate id
            json.dumps([1, 2]),
            line("only-negative", answer=rubric(("c1", -1, "An error"))),
            line("zero", answer=rubric(("c1", 0, "Nothing"))),
            line("ok-too"),
        ]
    )

    with pytest.raises(TaskSetInvalid) as caught:
        tasks_parse(text)

    numbers = [error.line for error in caught.value.errors]
    assert numbers == [2, 3, 4, 5, 6, 7, 8]
    messages = {error.line: error.message for error in caught.value.errors}
    assert "not valid JSON" in messages[2]
    assert messages[3].startswith("problem")
    assert "sections" in messages[4]
    assert "already used on line 1" in messages[5]
    assert "positive weight" in messages[7]
    assert "other than 0" in messages[8]


def test_an_answer_that_is_not_json_is_reported() -> None:
    with pytest.raises(TaskSetInvalid) as caught:
        tasks_parse(line("t", answer="sections: none"))

    assert caught.value.errors[0].line == 1
    assert "answer is not valid JSON" in caught.value.errors[0].message


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(TaskSetInvalid):
        tasks_parse("\n\n")


@pytest.mark.django_db
def test_a_file_with_one_bad_line_imports_nothing() -> None:
    owner = User.objects.create_user("importer")
    text = line("t1") + "\n" + line("t2", problem="") + "\n"

    with pytest.raises(TaskSetInvalid):
        taskset_import(owner=owner, name="mine", text=text)

    assert TaskSet.objects.count() == 0 and Task.objects.count() == 0 and Criterion.objects.count() == 0


@pytest.mark.django_db
def test_an_import_saves_tasks_and_one_row_per_criterion() -> None:
    owner = User.objects.create_user("importer")

    task_set = taskset_import(owner=owner, name="mine", text=line("t1") + "\n" + line("t2"))

    assert list(task_set.tasks.values_list("external_id", flat=True)) == ["t1", "t2"]
    first = task_set.tasks.get(external_id="t1")
    assert list(first.criteria.values_list("external_id", "weight", "section_id")) == [
        ("c1", 2.0, "factual-accuracy"),
        ("c2", -1.0, "factual-accuracy"),
    ]


def test_the_sample_set_has_twelve_tasks_in_several_domains_with_negative_criteria() -> None:
    tasks = tasks_parse(sample_text())

    assert len(tasks) == 12
    assert len({task.domain for task in tasks}) >= 6
    for task in tasks:
        criteria = [c for section in task.answer.sections for c in section.criteria]
        assert 8 <= len(criteria) <= 15, task.id
        assert any(c.weight < 0 for c in criteria), task.id
        assert {s.id for s in task.answer.sections} >= {"factual-accuracy", "presentation-quality"}


@pytest.mark.django_db
def test_loading_the_sample_set_twice_keeps_one_copy() -> None:
    owner = User.objects.create_user("sampler")

    first = taskset_sample_load(owner=owner)
    again = taskset_sample_load(owner=owner)

    assert first.pk == again.pk and first.tasks.count() == 12
