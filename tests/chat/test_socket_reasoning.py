"""A reasoning model's reasoning streams into its column, folded, apart from its answer, and is saved."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async

from apps.chat.models import PanelAnswer
from tests.chat.conftest import Room, deltas_of, panel_make, turn_ended
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
    panel = await sync_to_async(panel_make)(room.user, ["demo/atlas", "fake/thinker"])
    socket = await room.open()
    await socket.send({"type": "send", "prompt": "Which cache?", "panel": panel.pk})

    frame = await socket.receive_until(lambda f: any(d.get("reasoning") for d in deltas_of(f)))
    (delta,) = [d for d in deltas_of(frame) if d.get("reasoning")]
    assert (delta["seat"], delta["offset"], delta["text"]) == (2, 0, REASONING)
    done = await socket.receive_until(
        lambda f: f["type"] == "html" and 'data-seat="2"' in f["html"] and 'data-status="done"' in f["html"]
    )
    ended = await socket.receive_until(turn_ended())
    await socket.close()

    # Folded and escaped in the finished column, for the thinking seat only.
    assert 'class="reasoning"' in done["html"] and "<summary>Reasoning</summary>" in done["html"]
    assert "First weigh &lt;b&gt;latency&lt;/b&gt; against cost." in done["html"]
    assert ended["status"] == "done"
    atlas_column = ended["html"][ended["html"].index('data-seat="1"') : ended["html"].index('data-seat="2"')]
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
            f["type"] == "html" and 'data-seat="2"' in f["html"] and 'data-status="streaming"' in f["html"]
        )
    )
    ended = await socket.receive_until(turn_ended())
    await socket.close()

    assert 'id="turn-' in started["html"] and '-seat-2-reasoning" hidden>' in started["html"]
    assert '-seat-2-reasoning-text" data-offset="0"' in started["html"]
    # A seat that never reasoned shows no reasoning once done.
    assert 'class="reasoning"' not in ended["html"]
