"""A reasoning model's reasoning streams into its column, folded, apart from its answer, and is saved."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from apps.chat.models import PanelAnswer
from tests.chat.conftest import Reassembler, Room, panel_make, turn_ended
from tests.fakes.upstream import FakeUpstream, ModelScript

pytestmark = pytest.mark.django_db(transaction=True)

REASONING = "First weigh <b>latency</b> against cost."


@pytest.fixture
def endpoint(endpoint: FakeUpstream) -> FakeUpstream:
    endpoint.script("thinker", ModelScript(text="Use Redis.", reasoning=REASONING, comments=False))
    return endpoint


async def test_reasoning_streams_as_its_own_delta_and_stays_out_of_the_answer(
    room: Room, endpoint: FakeUpstream
) -> None:
    # The answer waits for the test after the reasoning: the page shows the reasoning while the answer is
    # still to come. (As a delta of its own, marked as reasoning, or in the turn's first snapshot if it came
    # within its window; a reasoning delta's frame is shown step by step in test_recorder.py.)
    answering = threading.Event()
    endpoint.script(
        "thinker", ModelScript(text="Use Redis.", reasoning=REASONING, comments=False, holds={0: answering})
    )
    panel = await sync_to_async(panel_make)(room.user, ["demo/atlas", "fake/thinker"])
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Which cache?", "panel": panel.pk})

    texts = Reassembler(strict=True)

    def reasoned(frame: dict[str, Any]) -> bool:
        texts.apply(frame)
        return texts.texts.get("seat-2-reasoning") == REASONING

    await socket.receive_until(reasoned)
    assert texts.texts.get("seat-2", "") == "", "the reasoning is not in the answer"
    answering.set()
    # The seat's end and the turn's may come within one window of frames: the finished column is looked at
    # in the turn's last snapshot, which has it for certain.
    ended = await socket.receive_until(turn_ended())
    await socket.close()

    assert ended["status"] == "done"
    html = ended["html"]
    atlas_column = html[html.index('data-seat="1"') : html.index('data-seat="2"')]
    thinker_column = html[html.index('data-seat="2"') : html.index('class="analysis-fold"')]
    # Folded and escaped in the finished column, for the thinking seat only.
    assert 'data-status="done"' in thinker_column and 'class="reasoning"' in thinker_column
    assert "<summary>Reasoning</summary>" in thinker_column
    assert "First weigh &lt;b&gt;latency&lt;/b&gt; against cost." in thinker_column
    assert 'class="reasoning"' not in atlas_column
    answer = await sync_to_async(PanelAnswer.objects.get)(turn_id=ended["turn"], seat=2)
    assert answer.reasoning == REASONING and answer.content == "Use Redis."


async def test_a_column_that_may_still_reason_has_a_hidden_place_for_it(
    room: Room, endpoint: FakeUpstream
) -> None:
    endpoint.script("thinker", ModelScript(text="Use Redis.", comments=False, latency_s=0.5))
    panel = await sync_to_async(panel_make)(room.user, ["demo/atlas", "fake/thinker"])
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Which cache?", "panel": panel.pk})

    started = await socket.receive_until(
        lambda f: (
            f["type"] in ("html", "snapshot")
            and 'data-seat="2"' in f["html"]
            and 'data-status="streaming"' in f["html"]
        )
    )
    ended = await socket.receive_until(turn_ended())
    await socket.close()

    assert 'id="turn-' in started["html"] and '-seat-2-reasoning" hidden>' in started["html"]
    assert '-seat-2-reasoning-text" data-offset="0"' in started["html"]
    # A seat that never reasoned shows no reasoning once done.
    assert 'class="reasoning"' not in ended["html"]
