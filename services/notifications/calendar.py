"""Greeting days by country: public holidays from the ``holidays`` package plus a configured list.

A holiday spanning several days (Spring Festival) is greeted once, on its first day; observed and
substituted days off are not holidays to greet.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import date
from functools import lru_cache

import holidays

from .settings import ExtraHoliday

_SKIP = re.compile(r"observed|day off|substitut|eve\b", re.IGNORECASE)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


@lru_cache(maxsize=1024)
def _package_days(country: str, year: int, selection: tuple[tuple[str, str], ...]) -> dict[date, tuple[str, ...]]:
    try:
        calendar = holidays.country_holidays(country, years=year, language="en_US")
    except NotImplementedError:  # a country the package does not know: only the configured list
        return {}
    first: dict[str, date] = {}
    for day, names in sorted(calendar.items()):
        for name in names.split("; "):
            if _SKIP.search(name):
                continue
            if selection:
                key = next((s for s, part in selection if part.lower() in name.lower()), None)
            else:
                key = slug(name)
            if key and key not in first:
                first[key] = day
    days: dict[date, list[str]] = {}
    for key, day in first.items():
        days.setdefault(day, []).append(key)
    return {day: tuple(keys) for day, keys in days.items()}


def holidays_on(day: date, country: str, *, selection: Mapping[str, Mapping[str, str]],
                extra: Sequence[ExtraHoliday]) -> list[str]:
    """Slugs of the greeting days falling on ``day`` in ``country``."""
    chosen = tuple(sorted(selection.get(country, {}).items()))
    found = list(_package_days(country, day.year, chosen).get(day, ()))
    for item in extra:
        # A configured day adds to the package only where the package has nothing that day, so a
        # country that already keeps Christmas is not greeted twice.
        if found:
            break
        if (item.month, item.day) == (day.month, day.day) and (not item.countries or country in item.countries):
            found.append(item.slug)
    return found
