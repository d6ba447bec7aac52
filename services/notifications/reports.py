"""What the win-back messages achieved: pure arithmetic over notification records."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: The records the win-back figures read: the win-back asked for, and the welcome back a
#: reactivation asks for (whatever became of either message).
TRIGGERS = ("win_back", "welcome_back")


def _outcome(record: Mapping[str, Any]) -> str:
    """What became of a message: sent, failed, deferred, or suppressed:<reason>."""
    status = record.get("status") or "unknown"
    return f"suppressed:{record.get('reason') or 'unknown'}" if status == "suppressed" else status


def win_back_report(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Per outcome of the win-back messages (sent, or why not): how many customers were asked to
    come back and how many came back afterwards (a reactivation noticed after their first win-back
    of that outcome). Customers who could not be reached (no consent, say) are the comparison for
    those who were."""
    first: dict[tuple[str, str], Any] = {}
    returns: dict[str, list[Any]] = {}
    for record in records:
        customer, at = record["customer_id"], record["created_at"]
        if record["trigger"] == "welcome_back":
            returns.setdefault(customer, []).append(at)
        elif record["trigger"] == "win_back":
            key = (_outcome(record), customer)
            if key not in first or at < first[key]:
                first[key] = at
    rows: dict[str, list[int]] = {}
    for (outcome, customer), at in first.items():
        row = rows.setdefault(outcome, [0, 0])
        row[0] += 1
        row[1] += any(back > at for back in returns.get(customer, ()))
    return {outcome: {"customers": n, "reactivated": back, "reactivation_rate": round(back / n, 4)}
            for outcome, (n, back) in sorted(rows.items())}
