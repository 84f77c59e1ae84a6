"""A run that fails for a reason the provider gave says that reason: no credits, rate limited, no such model;
and a seat whose model no endpoint serves fails at once instead of holding the panel through retries."""

from __future__ import annotations

import pytest

from apps.fusion.engine import run_fusion
from apps.fusion.schemas import RunDone, RunFailed, SeatDone, SeatFailed
from apps.providers.base import ProviderError, ProviderFailureReason
from apps.providers.openai_compat import OpenAICompatClient
from tests.fakes.upstream import FakeUpstream, ModelScript
from tests.fusion.conftest import FakeClient, FakeGateway, Script, events_collect, fusion_request, of_type


def _error(status: int, reason: ProviderFailureReason | None) -> ProviderError:
    return ProviderError(f"openrouter returned HTTP {status}", status_code=status, reason=reason)


@pytest.mark.parametrize(
    ("status", "reason"),
    [(402, "insufficient_credits"), (429, "rate_limited"), (404, "invalid_model")],
)
async def test_a_panel_that_failed_for_one_provider_reason_fails_with_that_reason(
    fake: FakeClient, gateway: FakeGateway, status: int, reason: ProviderFailureReason
) -> None:
    for model in ("fake/a", "fake/b", "fake/c"):
        fake.script(model, Script(chunks=[], error=_error(status, reason)))

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    (failed,) = of_type(events, RunFailed)
    assert failed.reason == reason
    assert all(seat.status_code == status for seat in of_type(events, SeatFailed))


async def test_a_panel_that_failed_for_different_reasons_is_all_panels_failed(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script("fake/a", Script(chunks=[], error=_error(402, "insufficient_credits")))
    fake.script("fake/b", Script(chunks=[], error=_error(429, "rate_limited")))
    fake.script("fake/c", Script(chunks=[], error=_error(502, None)))

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    (failed,) = of_type(events, RunFailed)
    assert failed.reason == "all_panels_failed"


async def test_a_writer_out_of_credits_fails_the_run_as_insufficient_credits(
    fake: FakeClient, gateway: FakeGateway
) -> None:
    fake.script("fake/writer", Script(chunks=[], error=_error(402, "insufficient_credits")))

    events = await events_collect(run_fusion(fusion_request(), gateway=gateway))

    (failed,) = of_type(events, RunFailed)
    assert failed.reason == "insufficient_credits" and "fake/writer" in failed.message


async def test_a_seat_no_endpoint_serves_fails_after_one_request_and_the_others_go_on(
    fake_upstream: FakeUpstream,
) -> None:
    # Backoff as shipped: a retried 503 would hold this panel (which waits for every seat) for seconds.
    client = OpenAICompatClient(base_url=fake_upstream.base_url, api_key="sk-or-v1-test", max_retries=3)
    fake_upstream.script(
        "vendor/gone", ModelScript(error_status=503, error_message="No endpoints found for vendor/gone.")
    )
    request = fusion_request(seats=["vendor/gone", "vendor/ok"], judge="vendor/judge", writer="vendor/writer")

    events = await events_collect(run_fusion(request, gateway=FakeGateway(client)))

    (failed,) = of_type(events, SeatFailed)
    assert failed.model == "vendor/gone" and failed.status_code == 503
    assert "No endpoints found" in failed.error
    assert len(fake_upstream.requests_for("vendor/gone")) == 1
    assert [event.model for event in of_type(events, SeatDone)] == ["vendor/ok"]
    assert of_type(events, RunDone)
