"""Harbor PUSH_ARTIFACT -> which tracked images may move to the pushed tag. Pure: the no-downgrade check
against what each Application carries is repeated by the executor on fresh state, under the lock."""

from __future__ import annotations

from datetime import datetime

from handlers.catalog import Catalog
from handlers.gitops_actions import HarborPlan, ImageUpdate, decision
from handlers.image_refs import image_text
from handlers.image_strategies import Candidate, eligible
from handlers.models import Event


def pushed_at(event: Event) -> float:
    """When Harbor says the artifact was pushed: `occur_at` (Default format) or `time` (CloudEvents);
    else when the broker received it."""
    payload = event.payload or {}
    occur = payload.get("occur_at")
    if isinstance(occur, int | float) and not isinstance(occur, bool):
        return float(occur)
    stamp = payload.get("time")
    if isinstance(stamp, str):
        try:
            return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    return event.received_at.timestamp()


def plan_harbor(event: Event, catalog: Catalog, *, now: datetime) -> HarborPlan:
    image = event.image or ""
    target = image_text(image, event.tag, event.digest)
    if not image:
        act = decision("match", "harbor", "push names no image repository", now=now)
        return HarborPlan((), (act,), act.decision)
    tag = event.tag or ""
    if not tag or tag.startswith("sha256:"):
        act = decision("match", target, "untagged artifact: no tag to deploy", now=now)
        return HarborPlan((), (act,), act.decision)
    matches = catalog.images_for(image)
    if not matches:
        act = decision("match", target, "no matching workload", now=now, image_key=catalog.image_key(image))
        return HarborPlan((), (act,), f"no matching workload for {catalog.image_key(image)}")
    candidate = Candidate(tag=tag, digest=event.digest, pushed_at=pushed_at(event), event_id=event.id)
    updates: list[ImageUpdate] = []
    actions = []
    for match in matches:
        where = f"{match.app.name}/{match.image.alias}"
        tracked = match.image
        if tracked.problem:
            actions.append(decision("filter", where, tracked.problem, now=now))
            continue
        refused = eligible(
            tracked.strategy,
            tag,
            constraint=tracked.constraint,
            fixed_tag=tracked.fixed_tag,
            allow=tracked.allow_tags,
            ignore=tracked.ignore_tags,
            digest=event.digest,
        )
        if refused:
            actions.append(decision("filter", where, refused, now=now, strategy=tracked.strategy))
            continue
        updates.append(
            ImageUpdate(app=match.app.name, team=match.app.team, image=tracked, candidate=candidate)
        )
    if updates:
        reason = f"{target} matches {len(updates)} workload(s)"
    else:
        reason = actions[0].decision if len(actions) == 1 else f"{target}: no workload accepts this tag"
    return HarborPlan(tuple(updates), tuple(actions), reason)
