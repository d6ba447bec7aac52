"""Message templates: a Jinja2 immutable sandbox with strict undefined variables, per type and locale.

Values are data, never template source, so a customer named ``{{ ''.__class__ }}`` is greeted by
exactly that text. Care messages get the unsubscribe line (e-mail) or the ``回复T退订`` suffix (SMS)
here rather than in each template, so no template can forget them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, Template, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATE_DIR = Path(__file__).with_name("templates")
SMS_UNSUBSCRIBE = "回复T退订"
PARTS = ("subject", "body", "sms")


class TemplateError(ValueError):
    """A template that cannot be rendered: unknown type, or a variable the context lacks."""


@dataclass(frozen=True)
class Rendered:
    template: str
    locale: str
    channel: str
    subject: str
    body: str
    sms_code: str | None = None
    sms_params: Mapping[str, str] = field(default_factory=dict)


class Templates:
    def __init__(self, default_locale: str = "zh-CN", directory: Path = TEMPLATE_DIR) -> None:
        self.env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        self.sources: dict[str, dict[str, Any]] = {}
        for path in sorted(directory.glob("*.yaml")):
            self.sources[path.stem] = yaml.safe_load(path.read_text(encoding="utf-8"))
        self.by_language: dict[str, str] = {}
        for locale in self.sources:
            self.by_language.setdefault(locale.split("-")[0], locale)
        if default_locale not in self.sources:
            raise ValueError(f"no templates for the default locale {default_locale}")
        self.default_locale = default_locale

    @property
    def types(self) -> list[str]:
        return sorted(k for k in self.sources[self.default_locale] if not k.startswith("_"))

    def resolve(self, locale: str | None, template: str) -> str:
        """The locale to use: the customer's, then its language, then the default."""
        candidates = []
        if locale:
            candidates.append(locale)
            language = locale.split("-")[0]
            candidates.append(language)
        candidates.append(self.default_locale)
        for candidate in candidates:
            shipped = candidate if candidate in self.sources else self.by_language.get(candidate)
            if shipped and template in self.sources[shipped]:
                return shipped
        raise TemplateError(f"unknown template {template!r}")

    @lru_cache(maxsize=512)  # noqa: B019 - one Templates per process; templates never change
    def _compiled(self, locale: str, template: str, part: str) -> Template:
        source = self.sources[locale][template] if part != "_unsubscribe" else self.sources[locale]
        return self.env.from_string(source[part])

    def render(self, template: str, locale: str | None, channel: str, context: Mapping[str, Any], *,
               care: bool, unsubscribe_url: str | None = None) -> Rendered:
        chosen = self.resolve(locale, template)
        spec = self.sources[chosen][template]
        values = dict(context)
        if "holiday" in values:
            names = self.sources[chosen].get("_holidays", {})
            values["holiday_name"] = names.get(values["holiday"], values["holiday"].replace("_", " ").title())
        # A tier reaches the customer by its name in their language, never as the code on the contract.
        tiers = self.sources[chosen].get("_tiers", {})
        for key in ("tier", "previous"):
            if key in values:
                values[f"{key}_name"] = tiers.get(values[key], values[key])
        # Other codes (an SLA target, a rung of the ladder, a reason) by their names in the language.
        for key, names in self.sources[chosen].get("_labels", {}).items():
            if key in values:
                values[f"{key}_name"] = names.get(values[key], values[key])
        try:
            subject = self._compiled(chosen, template, "subject").render(values)
            body = self._compiled(chosen, template, "body").render(values)
            sms = self._compiled(chosen, template, "sms").render(values)
            footer = (self._compiled(chosen, template, "_unsubscribe").render(unsubscribe_url=unsubscribe_url or "")
                      if care else "")
        except Exception as exc:  # StrictUndefined and sandbox errors: say which template and why
            raise TemplateError(f"{template} ({chosen}): {exc}") from exc
        if channel == "sms":
            text = sms + SMS_UNSUBSCRIBE if care and not sms.endswith(SMS_UNSUBSCRIBE) else sms
            return Rendered(template, chosen, channel, subject, text, spec.get("sms_code"),
                            self._sms_params(chosen, template, values))
        text = f"{body}\n\n{footer}" if footer else body
        return Rendered(template, chosen, channel, subject, text)

    def _sms_params(self, locale: str, template: str, values: Mapping[str, Any]) -> dict[str, str]:
        used = meta.find_undeclared_variables(self.env.parse(self.sources[locale][template]["sms"]))
        return {name: str(values[name]) for name in sorted(used)}
