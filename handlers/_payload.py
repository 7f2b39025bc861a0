"""Body decoding shared by the senders: bytes → a JSON object → a pydantic model, every failure as a
PayloadError (400) whose detail is safe to return (locations and messages, never the input values)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from handlers.errors import PayloadError

ModelT = TypeVar("ModelT", bound=BaseModel)


class WireModel(BaseModel):
    """Base for sender payload models: unknown fields are ignored (senders add fields every release)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def _reject_constant(name: str) -> NoReturn:
    # Go never emits NaN/Infinity; accepting them would make the stored payload invalid JSON.
    raise ValueError(f"{name} is not valid JSON")


def load_object(body: bytes, sender: str) -> dict[str, Any]:
    """The body as a JSON object."""
    try:
        data = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise PayloadError(f"{sender} body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        raise PayloadError(f"{sender} body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise PayloadError(f"{sender} body must be a JSON object, got {type(data).__name__}")
    return data


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
