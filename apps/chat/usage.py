"""What a user's recent runs wrote, for the composer's cost estimate (``panels.costs.UsageHistory``).

Named by the ``COST_ESTIMATE_USAGE_HISTORY`` setting: the panels app computes the estimate but sits below the
chat app, which records the runs.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from apps.chat.models import Turn
from apps.panels.costs import UsageHistory

# Enough runs for a stable median, few enough to follow a change in how a model answers.
RECENT_RUNS = 50


def usage_history_for(*, user: Any) -> UsageHistory:
    """Completion tokens of every call of the user's last ``RECENT_RUNS`` finished runs, by (role, model).

    One query: the user's conversations newest first (index ``owner, -updated_at``), their turns by position,
    stopped after ``RECENT_RUNS``; only the turns' recorded totals are read."""
    rows = (
        Turn.objects.filter(conversation__owner_id=user.pk, status=Turn.Status.DONE)
        .order_by("-conversation__updated_at", "-conversation_id", "-position")
        .values_list("totals", flat=True)[:RECENT_RUNS]
    )
    completions: defaultdict[tuple[str, str], list[int]] = defaultdict(list)
    for totals in rows:
        for step in (totals or {}).get("steps") or []:
            if not isinstance(step, dict) or step.get("status") != "done":
                continue
            tokens = (step.get("usage") or {}).get("completion_tokens")
            if isinstance(tokens, int) and tokens > 0:
                completions[(str(step.get("role")), str(step.get("model")))].append(tokens)
    return UsageHistory(completions=dict(completions))
