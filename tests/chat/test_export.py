"""A conversation downloads as Markdown and as JSON, for its owner and through a live share link, with every
seat, the analysis, the fused answer, sources and costs; people's and models' text stays data."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client
from markdown_it import MarkdownIt

from apps.chat.export import EXPORT_VERSION, ConversationExport
from apps.chat.models import Conversation, PanelAnswer, Turn
from apps.chat.services import conversation_create, share_link_create, share_link_revoke
from tests.chat.conftest import user_make

pytestmark = pytest.mark.django_db

HOSTILE_PROMPT = (
    "# Not a heading\n```\nfenced?\n```\n<script>window.__x = 1</script> <img src=x onerror=alert(1)> "
    "**bold** [link](javascript:alert(1))"
)
SEATS = [
    # seat, model, label, status, content, tokens (prompt, completion), cost, sources
    (1, "fake/alpha", "Alpha (fake)", "done", "Alpha says *PostgreSQL*.", (120, 80), 0.0004, []),
    (
        2,
        "fake/beta",
        "Beta (fake)",
        "done",
        "Beta says MySQL.",
        (120, 60),
        0.0003,
        [{"url": "https://example.org/db", "title": "Databases compared"}],
    ),
    (3, "fake/alpha", "Alpha (fake) #2", "failed", "Half an ans", (120, 5), None, []),
]


@pytest.fixture
def alice() -> Any:
    return user_make("alice")


@pytest.fixture
def owner_client(alice: Any) -> Client:
    client = Client()
    client.force_login(alice)
    return client


def conversation_make(owner: Any, *, title: str = "Databases, compared") -> Conversation:
    conversation = conversation_create(owner=owner, title=title)
    for position, prompt in ((1, "Which database?"), (2, HOSTILE_PROMPT)):
        turn = Turn.objects.create(
            conversation=conversation,
            position=position,
            prompt=prompt,
            panel_snapshot={
                "name": "Mixed",
                "judge": "fake/judge",
                "writer": "fake/writer",
                "seats": [{"seat": s[0], "model": s[1], "name": s[2], "is_demo": False} for s in SEATS],
            },
            status="done",
            phase="finished",
            analysis={
                "consensus": ["Both work"],
                "contradictions": [
                    {
                        "topic": "Which one",
                        "stances": [
                            {"model": "fake/alpha", "stance": "PostgreSQL"},
                            {"model": "fake/beta", "stance": "MySQL"},
                        ],
                    }
                ],
                "partial_coverage": [],
                "unique_insights": [{"model": "fake/beta", "insight": "Licensing"}],
                "blind_spots": ["Backups"],
            },
            final_text=f"Fused answer {position}: **PostgreSQL**.",
            totals={
                "duration_ms": 2000.0,
                "usage": {
                    "prompt_tokens": 900,
                    "completion_tokens": 300,
                    "total_tokens": 1200,
                    "cost": 0.002,
                },
                "steps": [
                    {"role": "writer", "model": "fake/writer", "status": "done", "usage": {"cost": 0.001}},
                ],
            },
            cost=0.002,
        )
        for seat, model, _label, status, content, (prompt_tokens, completion_tokens), cost, sources in SEATS:
            PanelAnswer.objects.create(
                turn=turn,
                seat=seat,
                model_id=model,
                content=content,
                status=status,
                error="upstream 503" if status == "failed" else "",
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                cost=cost,
                sources=sources,
            )
    return conversation


def test_the_json_export_parses_into_the_versioned_shape_with_every_seat_and_figure(
    owner_client: Client, alice: Any
) -> None:
    conversation = conversation_make(alice)
    response = owner_client.get(f"/c/{conversation.pk}/export.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    data = json.loads(response.content)
    export = ConversationExport.model_validate(data)
    assert data["format"] == "fusionroom.conversation" and data["version"] == EXPORT_VERSION
    assert export.title == "Databases, compared" and len(export.turns) == 2
    turn = export.turns[1]
    assert turn.prompt == HOSTILE_PROMPT
    assert [(s.seat, s.model, s.label, s.status) for s in turn.seats] == [
        (1, "fake/alpha", "Alpha (fake)", "done"),
        (2, "fake/beta", "Beta (fake)", "done"),
        (3, "fake/alpha", "Alpha (fake) #2", "failed"),
    ]
    assert turn.seats[0].answer == "Alpha says *PostgreSQL*." and turn.seats[0].completion_tokens == 80
    assert turn.seats[0].cost == pytest.approx(0.0004) and turn.seats[2].cost is None
    assert turn.seats[2].error == "upstream 503" and turn.seats[2].answer == "Half an ans"
    assert turn.seats[1].sources[0].url == "https://example.org/db"
    assert turn.sources[0].title == "Databases compared"
    assert turn.analysis is not None and turn.analysis["blind_spots"] == ["Backups"]
    assert turn.final_answer == "Fused answer 2: **PostgreSQL**."
    assert turn.total_tokens == 1200 and turn.cost == pytest.approx(0.002)
    assert turn.steps[0].role == "writer" and turn.steps[0].cost == pytest.approx(0.001)
    assert export.totals.turns == 2 and export.totals.total_tokens == 2400
    assert export.totals.cost == pytest.approx(0.004)


def test_the_markdown_export_has_every_seat_the_analysis_and_the_fused_answer(
    owner_client: Client, alice: Any
) -> None:
    conversation = conversation_make(alice)
    response = owner_client.get(f"/c/{conversation.pk}/export.md")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/markdown; charset=utf-8"
    text = response.content.decode()
    for position in (1, 2):
        assert f"## Turn {position}" in text and f"Fused answer {position}: **PostgreSQL**." in text
    for seat, model, label, *_ in SEATS:
        assert text.count(f"### Seat {seat}: {label}\n") == 2 and text.count(f"Model `{model}`") >= 2
    assert "Alpha says *PostgreSQL*." in text and "Error: upstream 503" in text
    assert "### Seat 3: Alpha (fake) #2" in text
    assert "**Contradictions**" in text and "Alpha (fake): PostgreSQL" in text
    assert "<https://example.org/db> Databases compared" in text
    assert "cost $0.004" in text


def test_a_prompt_with_markdown_and_html_stays_text_in_the_markdown_export(
    owner_client: Client, alice: Any
) -> None:
    conversation = conversation_make(alice)
    text = owner_client.get(f"/c/{conversation.pk}/export.md").content.decode()
    # The prompt sits whole in a fence longer than the backticks inside it...
    fenced = re.search(r"^(`{4,})text\n(.*?)\n\1$", text, re.S | re.M)
    assert fenced is not None and fenced[2] == HOSTILE_PROMPT
    # ...so a Markdown renderer that even lets HTML through shows it as code: no heading, no tag, no link.
    html = MarkdownIt("commonmark", {"html": True}).render(text)
    assert "<h1>Not a heading</h1>" not in html and "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;window.__x = 1&lt;/script&gt;" in html
    assert 'href="javascript' not in html


def test_the_download_is_an_attachment_named_safely_from_the_title(owner_client: Client, alice: Any) -> None:
    conversation = conversation_make(alice, title='../"Évil"\\ name; <x>.md')
    response = owner_client.get(f"/c/{conversation.pk}/export.md")
    disposition = response["Content-Disposition"]
    date = f"{conversation.created_at:%Y-%m-%d}"
    assert disposition == f'attachment; filename="fusionroom-evil-name-xmd-{date}.md"'
    assert response["X-Content-Type-Options"] == "nosniff"
    untitled = conversation_make(alice, title="")
    disposition = owner_client.get(f"/c/{untitled.pk}/export.json")["Content-Disposition"]
    assert disposition == f'attachment; filename="fusionroom-conversation-{date}.json"'


def test_only_the_owner_can_export_and_an_unknown_format_is_not_found(
    owner_client: Client, alice: Any
) -> None:
    conversation = conversation_make(alice)
    stranger = Client()
    stranger.force_login(user_make("mallory"))
    for fmt in ("md", "json"):
        assert stranger.get(f"/c/{conversation.pk}/export.{fmt}").status_code == 404
        anonymous = Client().get(f"/c/{conversation.pk}/export.{fmt}")
        assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    assert owner_client.get(f"/c/{conversation.pk}/export.html").status_code == 404
    assert owner_client.get(f"/c/{conversation.pk}/export.md").status_code == 200


def test_a_share_link_exports_the_same_files_to_anyone_until_it_is_revoked(alice: Any) -> None:
    conversation = conversation_make(alice)
    link, token = share_link_create(conversation=conversation)
    visitor = Client()
    page = visitor.get(f"/s/{token}/").content.decode()
    assert f'href="/s/{token}/export.md"' in page and f'href="/s/{token}/export.json"' in page
    as_json = visitor.get(f"/s/{token}/export.json")
    assert as_json.status_code == 200 and as_json["Referrer-Policy"] == "no-referrer"
    export = ConversationExport.model_validate_json(as_json.content)
    assert [s.model for s in export.turns[0].seats] == ["fake/alpha", "fake/beta", "fake/alpha"]
    as_markdown = visitor.get(f"/s/{token}/export.md")
    assert as_markdown.status_code == 200 and "Fused answer 1" in as_markdown.content.decode()
    assert visitor.get(f"/s/{token}x/export.md").status_code == 404

    share_link_revoke(link=link)
    for fmt in ("md", "json"):
        assert visitor.get(f"/s/{token}/export.{fmt}").status_code == 404


def test_the_owners_page_links_both_downloads(owner_client: Client, alice: Any) -> None:
    conversation = conversation_make(alice)
    page = owner_client.get(f"/c/{conversation.pk}/").content.decode()
    assert f'href="/c/{conversation.pk}/export.md" download' in page
    assert f'href="/c/{conversation.pk}/export.json" download' in page


def test_the_export_reads_a_long_conversation_in_a_constant_number_of_queries(
    owner_client: Client, alice: Any, django_assert_max_num_queries: Any
) -> None:
    small = conversation_make(alice)
    with django_assert_max_num_queries(12) as few:
        owner_client.get(f"/c/{small.pk}/export.json")
    large = conversation_make(alice)
    for position in range(3, 23):
        Turn.objects.create(conversation=large, position=position, prompt="more", status="done")
    with django_assert_max_num_queries(len(few.captured_queries)):
        owner_client.get(f"/c/{large.pk}/export.json")


def test_a_title_and_labels_are_plain_text_in_the_markdown_export(owner_client: Client, alice: Any) -> None:
    conversation = conversation_make(alice, title="<b>Bold</b> *claims* [x](javascript:y)")
    text = owner_client.get(f"/c/{conversation.pk}/export.md").content.decode()
    assert text.startswith("# \\<b\\>Bold\\</b\\> \\*claims\\* \\[x\\](javascript:y)\n")
    html = MarkdownIt("commonmark", {"html": True}).render(text)
    assert "<b>" not in html and "<em>" not in html.split("</h1>")[0] and "href" not in html.split("</h1>")[0]
