"""Body decoding shared by the senders: bytes → a JSON object → a pydantic model, every failure as a
PayloadError (400) whose detail is safe to return (locations and messages, never the input values)."""

from __future__ import annotations

import hashlib
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic_core import from_json

from handlers.errors import PayloadError

ModelT = TypeVar("ModelT", bound=BaseModel)


class WireModel(BaseModel):
    """Base for sender payload models: unknown fields are ignored (senders add fields every release)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def load_object(body: bytes, sender: str) -> dict[str, Any]:
    """The body as a JSON object. Parsed by pydantic-core (jiter): twice as fast as `json.loads` on a push,
    and stricter where strictness is right for a wire format: NaN and Infinity (Go never emits them, and
    they would make the stored payload invalid JSON), unpaired surrogate escapes (no UTF-8 store can keep
    them) and nesting deeper than 200 levels are all refused. Integers of any size stay exact."""
    try:
        data = from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise PayloadError(f"{sender} body is nested too deeply") from None
        raise PayloadError(f"{sender} body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"{sender} body must be a JSON object, got {type(data).__name__}")
    return data


def load_model(model: type[ModelT], raw: bytes, sender: str, what: str) -> ModelT:
    """`raw` (a JSON object) as `model`, validated straight from its bytes: the intake then never builds
    the whole payload as Python objects, which under load cost as much as all its other work. What this
    parse lets through is exactly what `load_object` accepts: NaN and Infinity tokens (which pydantic
    allows in fields a model ignores) send the body the strict way, and so does any failure, so that
    every refusal reads as it always has."""
    if not _may_hold_inf_nan(raw):
        try:
            return model.model_validate_json(raw)
        except ValidationError:
            pass
    return validate(model, load_object(raw, sender), what)


# Beyond this many candidates, one substring search is cheaper than looking at each.
_MAX_CANDIDATES = 16


def _may_hold_inf_nan(raw: bytes) -> bool:
    """Whether `raw` holds `NaN` or `Infinity` anywhere."""
    return _holds(raw, b"NaN") or _holds(raw, b"Infinity")


def _holds(raw: bytes, token: bytes) -> bool:
    """Whether `raw` holds `token`. A substring search for three bytes or more walks the whole body at
    about a nanosecond a byte (a tenth of what validating it costs); one byte is found by memchr at a
    twentieth of that, and bodies hold few capital N and I, so the token is looked for where its first
    byte is."""
    first = token[:1]
    at = raw.find(first)
    for _ in range(_MAX_CANDIDATES):
        if at < 0:
            return False
        if raw.startswith(token, at):
            return True
        at = raw.find(first, at + 1)
    return at >= 0 and raw.find(token, at) >= 0


def validation_detail(exc: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(error["loc"]), "msg": error["msg"]} for error in exc.errors()]


def validate(model: type[ModelT], data: Any, what: str) -> ModelT:
    """`data` as `model`; a schema mismatch becomes PayloadError with loc/msg pairs as detail."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PayloadError(f"{what} does not match the expected schema", validation_detail(exc)) from None


def body_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()
