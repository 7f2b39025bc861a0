"""Kubernetes label selectors (`metav1.LabelSelector`: `matchLabels` and `matchExpressions`), as an
`ImageUpdater`'s `applicationRefs[].labelSelectors` carries them, matched the way the API server matches
them: every requirement must hold, and an absent or empty selector selects everything. A selector the
API server would refuse is refused here too (ValueError), never read as a looser one: dropping a
`NotIn` or `DoesNotExist` would select the very Applications it was written to leave alone."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

Operator = Literal["In", "NotIn", "Exists", "DoesNotExist"]
_WITH_VALUES: frozenset[str] = frozenset({"In", "NotIn"})
_WITHOUT_VALUES: frozenset[str] = frozenset({"Exists", "DoesNotExist"})
_OPERATORS = _WITH_VALUES | _WITHOUT_VALUES
# The API server's syntax for label names and values (at most 63 characters) and key prefixes (a DNS
# subdomain of at most 253): a selector naming anything else is refused, like any other invalid selector.
_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_PREFIX = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: frozenset[str] = frozenset()

    def holds(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.operator == "In":
            return value in self.values
        if self.operator == "NotIn":
            return value not in self.values  # an absent label is not in any set
        if self.operator == "Exists":
            return value is not None
        return value is None


@dataclass(frozen=True, slots=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement.holds(labels) for requirement in self.requirements)


EVERYTHING = LabelSelector()


def parse_label_selector(raw: Any) -> LabelSelector:
    """`raw` (the selector's JSON) as a LabelSelector; ValueError saying what is wrong with it."""
    if raw is None:
        return EVERYTHING
    if not isinstance(raw, Mapping):
        raise ValueError("must be an object with matchLabels and/or matchExpressions")
    match_labels = raw.get("matchLabels") or {}
    expressions = raw.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping):
        raise ValueError("matchLabels must be an object of label values")
    if not isinstance(expressions, list):
        raise ValueError("matchExpressions must be a list")
    requirements = [
        Requirement(_key(key, "a matchLabels key"), "In", frozenset({_value(value, f"matchLabels.{key}")}))
        for key, value in match_labels.items()
    ]
    requirements += [_expression(f"matchExpressions[{n}]", item) for n, item in enumerate(expressions)]
    return LabelSelector(tuple(requirements))


def _expression(where: str, raw: Any) -> Requirement:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be an object with key, operator and values")
    key = _key(raw.get("key"), f"{where}.key")
    operator = raw.get("operator")
    values = raw.get("values") or []
    if not isinstance(values, list):
        raise ValueError(f"{where}.values must be a list")
    texts = frozenset(_value(value, f"{where}.values[]") for value in values)
    if not isinstance(operator, str) or operator not in _OPERATORS:
        raise ValueError(f"{where}: unknown operator {operator!r} (In, NotIn, Exists or DoesNotExist)")
    if operator in _WITH_VALUES and not texts:
        raise ValueError(f"{where}: operator {operator} needs at least one value")
    if operator in _WITHOUT_VALUES and texts:
        raise ValueError(f"{where}: operator {operator} takes no values")
    return Requirement(key, cast(Operator, operator), texts)


def _key(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    prefix, _, name = value.rpartition("/")
    if not _is_name(name) or (prefix and not (len(prefix) <= 253 and _PREFIX.fullmatch(prefix))):
        raise ValueError(f"{what} {value!r} is not a label key ([prefix/]name, name at most 63 characters)")
    return value


def _value(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string")
    if value and not _is_name(value):
        raise ValueError(f"{what} {value!r} is not a label value (at most 63 letters, digits, '-', '_', '.')")
    return value


def _is_name(text: str) -> bool:
    return len(text) <= 63 and _NAME.fullmatch(text) is not None
