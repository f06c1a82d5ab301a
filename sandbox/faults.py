"""Fault plans: latency, throttling, errors and lost answers for sandbox endpoints.

A plan maps *targets* (an endpoint name, a group ``"vtex"``/``"erp"``, or ``"*"``) to fault
settings. It is pure: the servers ask it for a :class:`FaultDecision` per call, passing their own
seeded ``random.Random``, and act on it.

On a command line a plan is written as ``--faults SPEC``::

    vtex:429=5%,500=2%,retry-after=1;get_order:latency=20ms,jitter=10ms;erp:drop=1%

Settings layer from the least to the most specific target: an endpoint gets the settings of
``"*"``, overridden by those its group sets, overridden by those set for the endpoint itself.
In the example, ``get_order`` answers 429 for 5% of calls *and* waits 20±10 ms.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = [
    "ALL_ENDPOINTS",
    "CANCEL",
    "DENY",
    "ERP_CANCEL",
    "ERP_ENDPOINTS",
    "ERP_GET",
    "ERP_HOLD",
    "ERP_IMPORT",
    "ERP_INVOICE",
    "ERP_PACKED",
    "ERP_RELEASE",
    "FEED_COMMIT",
    "FEED_CONFIG",
    "FEED_GET",
    "GET_ORDER",
    "GROUPS",
    "HOOK_CONFIG",
    "INVOICE",
    "LIST_ORDERS",
    "START_HANDLING",
    "TARGETS",
    "TRACKING",
    "VTEX_ENDPOINTS",
    "FaultDecision",
    "FaultPlan",
    "FaultRule",
    "group_of",
]

# VTEX OMS endpoints
FEED_GET = "feed_get"
FEED_COMMIT = "feed_commit"
FEED_CONFIG = "feed_config"
GET_ORDER = "get_order"
LIST_ORDERS = "list_orders"
START_HANDLING = "start_handling"
CANCEL = "cancel"
DENY = "deny"
INVOICE = "invoice"
TRACKING = "tracking"
HOOK_CONFIG = "hook_config"
# Reference ERP endpoints
ERP_IMPORT = "erp_import"
ERP_GET = "erp_get"
ERP_CANCEL = "erp_cancel"
ERP_HOLD = "erp_hold"
ERP_RELEASE = "erp_release"
ERP_PACKED = "erp_packed"
ERP_INVOICE = "erp_invoice"

VTEX_ENDPOINTS: tuple[str, ...] = (
    FEED_GET,
    FEED_COMMIT,
    FEED_CONFIG,
    GET_ORDER,
    LIST_ORDERS,
    START_HANDLING,
    CANCEL,
    DENY,
    INVOICE,
    TRACKING,
    HOOK_CONFIG,
)
ERP_ENDPOINTS: tuple[str, ...] = (
    ERP_IMPORT,
    ERP_GET,
    ERP_CANCEL,
    ERP_HOLD,
    ERP_RELEASE,
    ERP_PACKED,
    ERP_INVOICE,
)
ALL_ENDPOINTS: tuple[str, ...] = VTEX_ENDPOINTS + ERP_ENDPOINTS
GROUPS: dict[str, tuple[str, ...]] = {
    "vtex": VTEX_ENDPOINTS,
    "erp": ERP_ENDPOINTS,
    "*": ALL_ENDPOINTS,
}
#: Every valid target, groups first.
TARGETS: tuple[str, ...] = ("*", "vtex", "erp", *ALL_ENDPOINTS)

_PROBABILITY_FIELDS = ("p429", "p500", "p503", "p_drop", "p_malformed")
_DURATION_FIELDS = ("latency_ms", "jitter_ms")
# Spec key -> FaultRule field, in the order a spec is written back.
_SPEC_KEYS: dict[str, str] = {
    "latency": "latency_ms",
    "jitter": "jitter_ms",
    "429": "p429",
    "retry-after": "retry_after",
    "500": "p500",
    "503": "p503",
    "drop": "p_drop",
    "malformed": "p_malformed",
}
_SPEC_ALIASES: dict[str, str] = {"retry_after": "retry-after"}
_SPEC_HELP = (
    "latency, jitter (milliseconds: 50, 50ms, 0.2s), "
    "429, 500, 503, drop, malformed (probabilities: 5% or 0.05), retry-after (seconds)"
)


def group_of(endpoint: str) -> str:
    """The group (``"vtex"`` or ``"erp"``) of an endpoint name."""
    if endpoint in VTEX_ENDPOINTS:
        return "vtex"
    if endpoint in ERP_ENDPOINTS:
        return "erp"
    raise ValueError(f"unknown endpoint {endpoint!r}; known endpoints: {', '.join(ALL_ENDPOINTS)}")


@dataclass(frozen=True)
class FaultRule:
    """Fault settings of one target.

    ``latency_ms``/``jitter_ms``: delay before answering, latency ± a uniform jitter.
    ``p429``/``p500``/``p503``: share of calls answered with that status instead of doing the work
    (429 carries ``Retry-After: retry_after`` seconds). ``p_drop``: share of calls whose work is
    done but whose answer is lost (connection dropped). ``p_malformed``: share of feed items
    served corrupted (only read on ``feed_get``).
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    p429: float = 0.0
    retry_after: float = 1.0
    p500: float = 0.0
    p503: float = 0.0
    p_drop: float = 0.0
    p_malformed: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            _check_value(f.name, getattr(self, f.name))


_FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in fields(FaultRule))


def _check_value(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"fault setting {name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"fault setting {name} must be finite, got {value!r}")
    if name in _PROBABILITY_FIELDS:
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"fault setting {name} is a probability within 0..1, got {value!r}")
    elif number < 0:
        raise ValueError(f"fault setting {name} must be >= 0, got {value!r}")
    return number


_DEFAULT_RULE = FaultRule()


@dataclass(frozen=True)
class FaultDecision:
    """What to do with one call."""

    delay: float  # seconds to sleep before answering
    status: int | None  # 429, 500 or 503 to answer instead of doing the work, or None
    retry_after: float | None  # seconds, with a 429
    drop_after_effect: bool  # do the work, then drop the connection without an answer

    @property
    def clean(self) -> bool:
        """No error and no drop (there may still be a delay)."""
        return self.status is None and not self.drop_after_effect


class FaultPlan:
    """Fault settings per target; immutable.

    ``rules`` maps a target to either a :class:`FaultRule` (all of its settings apply, replacing
    whatever less specific targets set) or a partial mapping of FaultRule field names to values
    (only those settings apply, the rest comes from less specific targets). Plans are usually
    built with :meth:`parse` or :meth:`from_json`, which produce partial settings.
    """

    __slots__ = ("_entries", "_resolved")

    def __init__(self, rules: Mapping[str, FaultRule | Mapping[str, float]] | None = None) -> None:
        entries: dict[str, dict[str, float]] = {}
        for target, rule in (rules or {}).items():
            _check_target(target)
            if isinstance(rule, FaultRule):
                entries[target] = asdict(rule)
            else:
                entries[target] = _check_settings(target, rule)
        self._entries = entries
        self._resolved: dict[str, FaultRule] = {e: self._resolve(e) for e in ALL_ENDPOINTS}

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def parse(cls, spec: str) -> FaultPlan:
        """Parse ``TARGET:KEY=VALUE[,KEY=VALUE...][;...]`` (see the module docstring).

        Whitespace is ignored and an empty spec means no faults. A target named in several parts
        gets the union of their settings (later values win). Raises ``ValueError``.
        """
        entries: dict[str, dict[str, float]] = {}
        for raw_part in spec.split(";"):
            part = "".join(raw_part.split())
            if not part:
                continue
            target, sep, settings = part.partition(":")
            if not sep or not target or not settings:
                raise ValueError(
                    f"fault spec part {part!r}: expected TARGET:KEY=VALUE[,KEY=VALUE...] "
                    f"(parts separated by ';')"
                )
            if target not in GROUPS and target not in ALL_ENDPOINTS:
                raise ValueError(
                    f"fault spec part {part!r}: unknown target {target!r}; "
                    f"allowed targets: {', '.join(TARGETS)}"
                )
            entry = entries.setdefault(target, {})
            for item in settings.split(","):
                if not item:
                    continue
                key, sep, value = item.partition("=")
                key = _SPEC_ALIASES.get(key.lower(), key.lower())
                if not sep:
                    raise ValueError(
                        f"fault spec part {part!r}: expected KEY=VALUE, got {item!r}; "
                        f"allowed keys: {_SPEC_HELP}"
                    )
                if key not in _SPEC_KEYS:
                    raise ValueError(
                        f"fault spec part {part!r}: unknown key {key!r}; allowed keys: {_SPEC_HELP}"
                    )
                name = _SPEC_KEYS[key]
                entry[name] = _parse_spec_value(part, key, name, value)
        for target, entry in entries.items():
            _check_shares(target, entry)
        return cls(entries)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FaultPlan:
        """Build a plan from ``{"rules": {target: {field: value}}}`` or ``{"spec": "..."}``.

        Field names are those of :class:`FaultRule`; fields left out are inherited from less
        specific targets. Raises ``ValueError``.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"fault plan must be a JSON object, got {type(data).__name__}")
        unknown = set(data) - {"rules", "spec"}
        if unknown:
            raise ValueError(
                f"fault plan: unknown keys {sorted(unknown)}; allowed keys: 'rules', 'spec'"
            )
        plan = cls.parse(_expect_str(data["spec"])) if "spec" in data else cls()
        rules = data.get("rules")
        if rules is None:
            return plan
        if not isinstance(rules, Mapping):
            raise ValueError(f"fault plan 'rules' must be an object, got {type(rules).__name__}")
        entries: dict[str, Mapping[str, float]] = {}
        for target, settings in rules.items():
            if not isinstance(settings, Mapping):
                raise ValueError(
                    f"fault plan rule {target!r} must be an object of settings, "
                    f"got {type(settings).__name__}"
                )
            entries[str(target)] = settings
        return plan.merged(cls(entries))

    def to_json(self) -> dict[str, Any]:
        """``{"rules": {target: {field: value}}}`` with only the settings each target sets."""
        return {"rules": {t: dict(entry) for t, entry in self._entries.items()}}

    def to_spec(self) -> str:
        """The plan in spec syntax (``parse(plan.to_spec()) == plan``)."""
        parts: list[str] = []
        for target, entry in self._entries.items():
            items = [
                f"{key}={_format_spec_value(name, entry[name])}"
                for key, name in _SPEC_KEYS.items()
                if name in entry
            ]
            if items:
                parts.append(f"{target}:{','.join(items)}")
        return ";".join(parts)

    # -- queries ------------------------------------------------------------------------------

    @property
    def rules(self) -> dict[str, FaultRule]:
        """The settings each target sets, as complete rules (unset fields at their defaults)."""
        return {t: FaultRule(**entry) for t, entry in self._entries.items()}

    def rule_for(self, endpoint: str) -> FaultRule:
        """The effective rule of an endpoint: its settings > its group's > ``"*"``'s > defaults."""
        try:
            return self._resolved[endpoint]
        except KeyError:
            group_of(endpoint)  # raises the helpful error
            raise

    def decide(self, endpoint: str, rng: random.Random) -> FaultDecision:
        """Draw the fate of one call to ``endpoint``.

        The delay is latency ± uniform jitter, clamped at 0. One uniform draw ``u`` then picks
        the outcome, the probabilities being disjoint shares of calls: ``u < p429`` → 429,
        ``u < p429 + p500`` → 500, then 503, then drop-after-effect.
        """
        rule = self.rule_for(endpoint)
        delay_ms = rule.latency_ms
        if rule.jitter_ms > 0:
            delay_ms += rng.uniform(-rule.jitter_ms, rule.jitter_ms)
        delay = max(0.0, delay_ms) / 1000.0
        u = rng.random()
        edge = rule.p429
        if u < edge:
            return FaultDecision(delay, 429, rule.retry_after, False)
        edge += rule.p500
        if u < edge:
            return FaultDecision(delay, 500, None, False)
        edge += rule.p503
        if u < edge:
            return FaultDecision(delay, 503, None, False)
        edge += rule.p_drop
        return FaultDecision(delay, None, None, u < edge)

    def malformed(self, rng: random.Random) -> bool:
        """Whether to corrupt one feed item (``rule_for("feed_get").p_malformed``)."""
        p = self._resolved[FEED_GET].p_malformed
        return p > 0.0 and rng.random() < p

    def merged(self, other: FaultPlan) -> FaultPlan:
        """A plan with this plan's targets, those ``other`` names replaced by ``other``'s."""
        entries: dict[str, Mapping[str, float]] = dict(self._entries)
        entries.update(other._entries)
        return FaultPlan(entries)

    @property
    def active(self) -> bool:
        """Whether any target sets anything other than the defaults."""
        return any(rule != _DEFAULT_RULE for rule in self._resolved.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FaultPlan):
            return NotImplemented
        return self._entries == other._entries

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FaultPlan.parse({self.to_spec()!r})"

    # -- internals ----------------------------------------------------------------------------

    def _resolve(self, endpoint: str) -> FaultRule:
        settings: dict[str, float] = {}
        for target in ("*", group_of(endpoint), endpoint):
            entry = self._entries.get(target)
            if entry:
                settings.update(entry)
        return FaultRule(**settings) if settings else _DEFAULT_RULE


def _check_target(target: str) -> None:
    if target not in GROUPS and target not in ALL_ENDPOINTS:
        raise ValueError(f"unknown fault target {target!r}; allowed targets: {', '.join(TARGETS)}")


def _check_settings(target: str, settings: Mapping[str, float]) -> dict[str, float]:
    checked: dict[str, float] = {}
    for name, value in settings.items():
        if name not in _FIELD_NAMES:
            raise ValueError(
                f"fault rule {target!r}: unknown setting {name!r}; "
                f"allowed settings: {', '.join(_FIELD_NAMES)}"
            )
        try:
            checked[name] = _check_value(name, value)
        except ValueError as exc:
            raise ValueError(f"fault rule {target!r}: {exc}") from None
    _check_shares(target, checked)
    return checked


def _check_shares(target: str, entry: Mapping[str, float]) -> None:
    total = sum(entry.get(name, 0.0) for name in ("p429", "p500", "p503", "p_drop"))
    if total > 1.0 + 1e-9:
        raise ValueError(
            f"fault rule {target!r}: 429, 500, 503 and drop are shares of the same calls and "
            f"must add up to at most 100%, got {total:.2%}"
        )


def _expect_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"fault plan 'spec' must be a string, got {type(value).__name__}")
    return value


def _parse_number(text: str) -> float:
    number = float(text)  # ValueError on garbage
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def _parse_spec_value(part: str, key: str, name: str, text: str) -> float:
    lowered = text.lower()
    try:
        if name in _DURATION_FIELDS or name == "retry_after":
            in_ms = name in _DURATION_FIELDS  # the field's unit, also that of a bare number
            if lowered.endswith("ms"):
                value = _parse_number(lowered[:-2]) / (1.0 if in_ms else 1000.0)
            elif lowered.endswith("s"):
                value = _parse_number(lowered[:-1]) * (1000.0 if in_ms else 1.0)
            else:
                value = _parse_number(lowered)
            if value < 0:
                raise ValueError(text)
            return value
        if lowered.endswith("%"):
            value = _parse_number(lowered[:-1]) / 100.0
        else:
            value = _parse_number(lowered)
    except ValueError:
        if name in _DURATION_FIELDS:
            expected = "a duration >= 0 in milliseconds, like 50, 50ms or 0.2s"
        elif name == "retry_after":
            expected = "a number of seconds >= 0, like 1, 0.5 or 500ms"
        else:
            expected = "a probability, like 5% or 0.05"
        raise ValueError(
            f"fault spec part {part!r}: bad value {text!r} for {key}; expected {expected}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(
            f"fault spec part {part!r}: probability {text!r} for {key} is out of range; "
            f"use 0..1 or 0%..100%"
        )
    return value


def _format_number(value: float) -> str:
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


def _format_spec_value(name: str, value: float) -> str:
    if name in _DURATION_FIELDS:
        return f"{_format_number(value)}ms"
    return _format_number(value)
