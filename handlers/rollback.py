"""Rollback awareness: an image the broker updated is pinned once the workload is found deploying an older
value than the one the broker applied (set by hand, reverted in git, or an Argo CD rollback: see
handlers/app_edits.py `deployed_value`), so that the next push does not undo a rollback, as Argo CD
Image Updater does (argoproj-labs/argocd-image-updater#1249). Pure: what counts as a rollback, and what
ends one, under each update strategy."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from handlers.image_strategies import ORDERED, Current, Strategy, tag_order


class Pin(BaseModel):
    """One image of one Application that the broker leaves alone: found carrying `found` after the
    broker had applied `applied`. Removed by an operator (API, CLI) or once the workload carries the
    applied value, or a later one, again."""

    model_config = ConfigDict(frozen=True)

    app: str
    alias: str
    team: str | None = None
    image: str
    strategy: Strategy
    applied: str
    found: str
    reason: str
    event_id: str
    pinned_at: datetime

    @property
    def key(self) -> str:
        return pin_key(self.app, self.alias)

    def refusal(self) -> str:
        """Why an update of this image is refused, in the event log."""
        later = " or later" if self.strategy in ORDERED else ""
        return (
            f"pinned since {self.pinned_at:%Y-%m-%d %H:%M:%S} UTC: {self.reason}; "
            f"updates resume once {self.image} is back at {self.applied}{later}, "
            f"or after `broker unpin {self.key}`"
        )


def pin_key(app: str, alias: str) -> str:
    return f"{app}/{alias}"


def value_text(value: Current) -> str:
    if value.tag and value.digest:
        return f"{value.tag}@{value.digest}"
    return value.tag or value.digest or ""


def _known(value: Current) -> bool:
    return bool(value.tag or value.digest)


def _same(a: Current, b: Current) -> bool:
    """The same value, as far as both are known: a tag parameter carries no digest."""
    if a.tag and b.tag and a.tag != b.tag:
        return False
    if a.digest and b.digest:
        return a.digest == b.digest
    return a.tag == b.tag


def rolled_back(strategy: Strategy, carried: Current, applied: Current) -> str | None:
    """How the carried value departs from the one the broker applied last, when only a rollback made
    outside the broker can explain it: lower by the strategy's order (semver, alphabetical) or, where the
    strategy cannot order values (digest, newest-build), any other value. None when the values are the
    same, the carried one is newer, or either is unknown."""
    if not _known(carried) or not _known(applied) or _same(carried, applied):
        return None
    # digest and newest-build order pushes by time, which a carried value does not record: no order.
    order = tag_order(strategy, carried.tag, applied.tag)
    if order is None and strategy in ORDERED:
        return None
    if order is not None and order >= 0:
        return None
    verb = "rolled back" if order is not None else "changed outside the broker"
    return f"{verb} from {value_text(applied)} to {value_text(carried)}"


def rolled_forward(strategy: Strategy, carried: Current, applied: Current) -> bool:
    """Whether the workload carries the applied value again, or (where the strategy orders values) a
    later one: the rollback is over."""
    if not _known(carried):
        return False
    if _same(carried, applied):
        return True
    order = tag_order(strategy, carried.tag, applied.tag)
    return order is not None and order > 0
