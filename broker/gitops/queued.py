"""Pushes still waiting in the queue that belong to the same burst. With one worker, the events of a burst
are processed one after another, so the one processed first looks ahead: Harbor pushes received within
the coalescing window after it and still `queued` are folded into its update (they are later answered
"coalesced into event X"). Reads the event store through its public helpers only; any fault there just
means no look-ahead."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import redis

from broker.store import decode_event, event_key, id_floor, index_key
from handlers.catalog import Catalog
from handlers.image_strategies import Candidate
from handlers.models import Event
from handlers.plan_harbor import plan_harbor

log = logging.getLogger(__name__)
LOOKAHEAD_LIMIT = 200


def queued_candidates(
    client: redis.Redis, catalog: Catalog, event: Event, app: str, window_s: float, *, now: datetime
) -> dict[str, list[Candidate]]:
    if window_s <= 0:
        return {}
    try:
        low = id_floor(event.received_at)
        high = id_floor(event.received_at + timedelta(seconds=window_s, milliseconds=1))
        ids = client.zrangebylex(
            index_key("status", "queued"), f"[{low}", f"({high}", start=0, num=LOOKAHEAD_LIMIT
        )
        others = [i.decode() if isinstance(i, bytes) else i for i in ids]
        others = [i for i in others if i != event.id]
        if not others:
            return {}
        raws = client.mget([event_key(i) for i in others])
    except redis.RedisError as exc:
        log.warning("look-ahead for coalescing failed: %s", exc)
        return {}
    found: dict[str, list[Candidate]] = {}
    for raw in raws:
        queued = decode_event(raw)
        if (
            queued is None
            or queued.source != "harbor"
            or queued.type != "artifact_push"
            or queued.status != "queued"
        ):
            continue
        for update in plan_harbor(queued, catalog, now=now).updates:
            if update.app == app:
                found.setdefault(update.image.alias, []).append(update.candidate)
    return found
