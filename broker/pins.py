"""Pinned images (handlers/rollback.py) in Redis; this module owns their keys. One hash, `<app>/<alias>`
-> the Pin as JSON: workers add and clear pins through `PinStore` (sync Redis) under the Application's
writer lock; the API lists and removes them with the async helpers at the bottom. An operator's unpin
also records the applied value it released, so that the same rollback (the workload still carries the
older value) is not taken for a new one at the next push."""

from __future__ import annotations

import redis
import redis.asyncio as aredis

from broker.store import text
from handlers.rollback import Pin, pin_key

PINS_KEY = "broker:pins"
RELEASED_KEY = "broker:pins:released"  # hash `<app>/<alias>` -> the applied value an unpin released


class PinStore:
    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def get(self, app: str, alias: str) -> Pin | None:
        raw = self.redis.hget(PINS_KEY, pin_key(app, alias))
        return Pin.model_validate_json(raw) if raw else None

    def add(self, pin: Pin) -> Pin:
        """The pin now in force: `pin`, or the one an earlier attempt of the same job already set."""
        if self.redis.hsetnx(PINS_KEY, pin.key, pin.model_dump_json()):
            return pin
        return self.get(pin.app, pin.alias) or pin

    def remove(self, app: str, alias: str) -> bool:
        return bool(self.redis.hdel(PINS_KEY, pin_key(app, alias)))

    def forget_app(self, app: str) -> int:
        """Drop the pins (and released values) of a deleted Application; how many pins it had."""
        prefix = pin_key(app, "")
        gone = 0
        for key in (PINS_KEY, RELEASED_KEY):
            fields = [name for name in self.redis.hkeys(key) if text(name).startswith(prefix)]
            if fields:
                removed = int(self.redis.hdel(key, *fields))
                gone += removed if key == PINS_KEY else 0
        return gone

    def released(self, app: str, alias: str) -> str | None:
        """The applied value an operator's unpin released for this image, if any."""
        raw = self.redis.hget(RELEASED_KEY, pin_key(app, alias))
        return text(raw) if raw else None


async def aget(client: aredis.Redis, app: str, alias: str) -> Pin | None:
    raw = await client.hget(PINS_KEY, pin_key(app, alias))
    return Pin.model_validate_json(raw) if raw else None


async def alist(client: aredis.Redis, *, team: str | None = None) -> list[Pin]:
    """Every pin (of one team, when given), by Application and alias."""
    pins = [Pin.model_validate_json(raw) for raw in (await client.hgetall(PINS_KEY)).values()]
    return sorted((p for p in pins if team is None or p.team == team), key=lambda p: (p.app, p.alias))


async def aremove(client: aredis.Redis, app: str, alias: str) -> Pin | None:
    """An operator's unpin: remove the pin and remember the applied value it released. The pin removed,
    or None when there was none."""
    key = pin_key(app, alias)
    async with client.pipeline(transaction=True) as pipe:
        pipe.hget(PINS_KEY, key)
        pipe.hdel(PINS_KEY, key)
        raw, _ = await pipe.execute()
    if not raw:
        return None
    pin = Pin.model_validate_json(raw)
    await client.hset(RELEASED_KEY, key, pin.applied)
    return pin
