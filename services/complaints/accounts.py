"""Account managers: who qualifies for one, whom the rule picks, and each change with its audit entry.

Pure, as ``domain`` is: an account, the customer's tier, the staff directory and the moment go in;
the account after the change (or None when nothing changes) comes out.

- A customer qualifies when their tier (``vip`` for a VIP, else the value tier) or their needs are
  among the rule's (``COMPLAINTS_ACCOUNT_RULE``; by default VIPs and custom needs).
- The rule picks the least loaded account manager who serves the customer's region and industry
  (fewest customers, ties by id), so the same state always picks the same person.
- The rule only ever gives a manager to a customer without one (or whose manager is no longer an
  account manager of the directory); it never takes one away. People change it over HTTP.
- Every change is one revision higher than the last and appends an audit entry: who, when, from,
  to and why.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from shared.contract.events import Needs

from .staff import Directory, Member

#: The actor of the rule's own changes.
RULE_ACTOR = "rule"


class AccountRule(BaseModel):
    """Which customers get an account manager (``COMPLAINTS_ACCOUNT_RULE``, JSON)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Tiers that qualify: ``vip`` is the VIP dimension, others the value tier (``high``, ...).
    tiers: tuple[Annotated[str, Field(min_length=1, max_length=32)], ...] = ("vip",)
    #: Needs (the profile's) that qualify.
    needs: tuple[Needs, ...] = ("custom",)


class Change(BaseModel):
    """One audit entry of an account."""

    model_config = ConfigDict(frozen=True)

    revision: int
    at: datetime
    actor: str
    reason: str
    previous: str | None = None
    manager: str | None = None


class Account(BaseModel):
    """What the complaints service knows of a customer's account: the profile fields the rule reads
    and the manager, with every change."""

    model_config = ConfigDict(extra="ignore")

    customer_id: str
    needs: str | None = None
    region: str | None = None
    industry: str | None = None
    manager: str | None = None
    manager_name: str | None = None
    revision: int = 0
    history: list[Change] = []


def qualifies(rule: AccountRule, tier: str | None, account: Account) -> str | None:
    """Why the rule gives this customer a manager (``vip``, ``tier_high``, ``custom_needs``), or None."""
    if tier is not None and tier in rule.tiers:
        return "vip" if tier == "vip" else f"tier_{tier}"
    if account.needs is not None and account.needs in rule.needs:
        return f"{account.needs}_needs"
    return None


def pick(directory: Directory, account: Account, loads: Mapping[str, int]) -> Member | None:
    """The least loaded account manager serving the customer's region and industry; ties by id."""
    eligible = [m for m in directory.account_managers() if m.serves(account.region, account.industry)]
    return min(eligible, key=lambda m: (loads.get(m.id, 0), m.id), default=None)


def current_manager(directory: Directory, account: Account) -> Member | None:
    """The account's manager while they are an account manager of the directory."""
    member = directory.member(account.manager)
    return member if member is not None and member.account_manager else None


def assign(account: Account, member: Member | None, *, actor: str, reason: str, now: datetime) -> Account | None:
    """The account with ``member`` as its manager (None: none), or None when that is already so."""
    manager = member.id if member is not None else None
    if manager == account.manager:
        return None
    change = Change(revision=account.revision + 1, at=now, actor=actor, reason=reason, previous=account.manager,
                    manager=manager)
    return account.model_copy(update={
        "manager": manager, "manager_name": member.name if member is not None else None,
        "revision": change.revision, "history": [*account.history, change]})


def by_rule(account: Account, tier: str | None, rule: AccountRule, directory: Directory, loads: Mapping[str, int],
            now: datetime) -> Account | None:
    """The rule's change of the account, if it makes one."""
    if current_manager(directory, account) is not None:
        return None
    reason = qualifies(rule, tier, account)
    if reason is None:
        return None
    member = pick(directory, account, loads)
    if member is None:
        return None
    return assign(account, member, actor=RULE_ACTOR,
                  reason=reason if account.manager is None else f"{reason}_manager_left", now=now)
