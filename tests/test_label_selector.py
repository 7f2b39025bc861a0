"""Label selectors matched as the API server matches them (`metav1.LabelSelector`), table-driven, and the
selectors it would refuse, refused with a message that names the faulty part."""

from __future__ import annotations

import re
from typing import Any

import pytest

from handlers.label_selector import parse_label_selector

LABELS = {"tier": "backend", "env": "dev", "blank": ""}


def expression(key: str, operator: Any, values: Any = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"key": key, "operator": operator}
    if values is not None:
        raw["values"] = values
    return raw


def requiring(*expressions: dict[str, Any]) -> dict[str, Any]:
    return {"matchExpressions": list(expressions)}


@pytest.mark.parametrize(
    ("selector", "selects"),
    [
        (None, True),
        ({}, True),
        ({"matchLabels": {}, "matchExpressions": []}, True),
        ({"matchLabels": {"tier": "backend"}}, True),
        ({"matchLabels": {"tier": "frontend"}}, False),
        ({"matchLabels": {"absent": ""}}, False),
        ({"matchLabels": {"blank": ""}}, True),
        ({"matchLabels": {"app.kubernetes.io/part-of": "apl"}}, False),
        (requiring(expression("app.kubernetes.io/part-of", "DoesNotExist")), True),
        ({"matchLabels": {"tier": "backend", "env": "dev"}}, True),
        (requiring(expression("env", "In", ["dev", "staging"])), True),
        (requiring(expression("env", "In", ["prod"])), False),
        (requiring(expression("absent", "In", ["x"])), False),
        (requiring(expression("env", "NotIn", ["prod"])), True),
        (requiring(expression("env", "NotIn", ["dev"])), False),
        (requiring(expression("absent", "NotIn", ["x"])), True),
        (requiring(expression("blank", "Exists")), True),
        (requiring(expression("absent", "Exists", [])), False),
        (requiring(expression("absent", "DoesNotExist")), True),
        (requiring(expression("tier", "DoesNotExist")), False),
        (
            {"matchLabels": {"tier": "backend"}} | requiring(expression("env", "NotIn", ["dev"])),
            False,
        ),
        (
            {"matchLabels": {"tier": "backend"}}
            | requiring(expression("env", "Exists"), expression("absent", "DoesNotExist")),
            True,
        ),
    ],
)
def test_selects_as_the_api_server_does(selector: Any, selects: bool) -> None:
    assert parse_label_selector(selector).matches(LABELS) is selects


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        (["tier"], "must be an object with matchLabels and/or matchExpressions"),
        ({"matchLabels": ["tier"]}, "matchLabels must be an object"),
        ({"matchLabels": {"tier": 1}}, "matchLabels.tier must be a string"),
        ({"matchLabels": {"": "x"}}, "a matchLabels key must be a non-empty string"),
        ({"matchExpressions": {"key": "env"}}, "matchExpressions must be a list"),
        ({"matchExpressions": ["env"]}, "matchExpressions[0] must be an object"),
        (requiring(expression("env", "in", ["dev"])), "matchExpressions[0]: unknown operator 'in'"),
        (requiring(expression("env", ["In"], ["dev"])), "unknown operator ['In']"),
        (requiring(expression("env", "In")), "operator In needs at least one value"),
        (requiring(expression("env", "NotIn", [])), "operator NotIn needs at least one value"),
        (requiring(expression("env", "Exists", ["dev"])), "operator Exists takes no values"),
        (requiring(expression("env", "In", "dev")), "matchExpressions[0].values must be a list"),
        (requiring(expression("env", "In", [1])), "matchExpressions[0].values[] must be a string"),
        (
            requiring(expression("env", "Exists"), {"operator": "Exists"}),
            "matchExpressions[1].key must be a non-empty string",
        ),
        # Label syntax: a value the API server refuses must not make a NotIn select everything.
        (requiring(expression("env", "NotIn", ["prod "])), "values[] 'prod ' is not a label value"),
        ({"matchLabels": {"tier": "x" * 64}}, "matchLabels.tier 'xxx"),
        ({"matchLabels": {"-tier": "a"}}, "key '-tier' is not a label key"),
        ({"matchLabels": {"Example.com/tier": "a"}}, "key 'Example.com/tier' is not a label key"),
        ({"matchLabels": {"example.com/": "a"}}, "key 'example.com/' is not a label key"),
        ({"matchLabels": {"a" * 64: "a"}}, "is not a label key"),
    ],
)
def test_refuses_what_the_api_server_refuses(selector: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_label_selector(selector)
