"""Following a requested sync without holding a worker. Right after the sync or refresh request the flow
starts a chain (`start_follow`); each link is one short rq job (`follow_hop`, run as
`broker.worker.follow_sync`) that reads the Application once and, until the operation settles or the
deadline passes, schedules the next look `gitops_sync_poll_s` later with rq's `enqueue_in` (workers run
the scheduler). The verdict is then applied once per (event, app): the deployment's rollout, the team's
notices, and a `follow` action appended to the event record, which stays `done`.

Every step can run twice (a worker killed mid-job, a re-run of the event): a newer chain for the same
(event, app) takes over and the older one stops at its next look; the verdict is stored before it is
acted on, "told" is marked once the notices are out (the notifier also drops a notice it sent within its
dedup window), and the event gets at most one `follow` action per Application."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from redis.exceptions import WatchError
from rq import Retry
from ulid import ULID

from broker.executors.follow import FollowResult, evaluate
from broker.gitops.engine import Engine, follow_action, follow_notices, rollout_status
from broker.kube import NotFound
from broker.queue import event_queue
from broker.store import SyncEventStore, decode_event, event_key, write_event
from handlers.models import FINAL_STATUSES, Action
from handlers.notices import Notice

log = logging.getLogger(__name__)

FOLLOW_JOB = "broker.worker.follow_sync"
JOB_TIMEOUT_S = 120  # one look: a GET of the Application and a few Redis writes
JOB_RESULT_TTL_S = 60  # a chain leaves one finished job per look; keep them briefly
JOB_FAILURE_TTL_S = 7 * 24 * 3600
JOB_RETRY_INTERVALS_S = [1, 5]  # a look that failed (or whose worker died) is tried again
RECORD_GRACE_S = 3600.0  # how long a verdict waits for its event to reach a final status (retries)
RECORD_POLL_S = 1.0
WATCH_ATTEMPTS = 20

Notify = Callable[[Iterable[Notice]], Any]


@dataclass(frozen=True)
class FollowSpec:
    """Everything a look needs, as plain JSON: the job's only argument."""

    event_id: str
    app: str
    team: str | None
    deployment_id: str | None
    since: float  # when the sync or refresh was requested (epoch seconds)
    explicit: bool  # an explicit sync, recognisable by our event id in the operation's info
    deadline: float  # epoch seconds: the look after it gives the verdict, settled or not
    token: str  # the chain's: a newer chain for the same (event, app) takes over


def start_follow(
    engine: Engine,
    *,
    event_id: str,
    app: str,
    team: str | None,
    deployment_id: str | None,
    since: float,
    explicit: bool,
) -> bool:
    """Schedule the first look (claiming the chain in the same transaction). False when following is
    switched off (`gitops_sync_follow_timeout_s` = 0)."""
    settings = engine.settings
    timeout = settings.gitops_sync_follow_timeout_s
    if timeout <= 0:
        return False
    token = uuid.uuid4().hex
    spec = FollowSpec(event_id, app, team, deployment_id, since, explicit, since + timeout, token)
    with engine.redis.pipeline(transaction=True) as pipe:
        engine.state.own_follow(pipe, event_id, app, token)
        _schedule(engine, spec, settings.gitops_sync_poll_s, pipe)
        pipe.execute()
    return True


def follow_hop(engine: Engine, store: SyncEventStore, notify: Notify, raw: dict[str, Any]) -> str:
    """One link of the chain; returns what it did (rq keeps it as the job's result)."""
    spec = FollowSpec(**raw)
    state = engine.state
    if not state.follows(spec.event_id, spec.app, spec.token):
        return "superseded"
    progress = state.progress(spec.event_id, spec.app)
    if "followed" not in progress:
        result = _look(engine, spec)
        if result is None:
            _schedule(engine, spec, engine.settings.gitops_sync_poll_s)
            return "following"
        action = follow_action(spec.app, result, at=engine.now())
        verdict = {"result": asdict(result), "action": action.model_dump(mode="json")}
        state.mark_once(spec.event_id, spec.app, "followed", verdict)
        progress = state.progress(spec.event_id, spec.app)  # a racing look may have stored it first
    verdict = progress["followed"]
    if not progress.get("told"):
        _tell(engine, notify, spec, _result(verdict["result"]))
        state.mark(spec.event_id, spec.app, "told", True)
    action = Action.model_validate(verdict["action"])
    if _record(store, spec, action):
        return "recorded"
    if time.time() < spec.deadline + RECORD_GRACE_S:
        _schedule(engine, spec, max(engine.settings.gitops_sync_poll_s, RECORD_POLL_S))
        return "waiting for the event to finish"
    log.warning("event never reached a final status: the follow result stays on the deployment only")
    return "not recorded"


def _schedule(
    engine: Engine, spec: FollowSpec, delay_s: float, pipe: redis.client.Pipeline | None = None
) -> None:
    queue = event_queue(engine.settings, engine.redis)
    queue.enqueue_in(
        timedelta(seconds=delay_s),
        FOLLOW_JOB,
        asdict(spec),
        job_id=f"follow-{spec.event_id}-{ULID()}",
        description=f"follow {spec.app} for event {spec.event_id}",
        job_timeout=JOB_TIMEOUT_S,
        result_ttl=JOB_RESULT_TTL_S,
        failure_ttl=JOB_FAILURE_TTL_S,
        retry=Retry(max=len(JOB_RETRY_INTERVALS_S), interval=JOB_RETRY_INTERVALS_S),
        pipeline=pipe,
    )


def _look(engine: Engine, spec: FollowSpec) -> FollowResult | None:
    """The verdict if this look gives one, else None (look again later)."""
    now = time.time()
    elapsed, timed_out = now - spec.since, now >= spec.deadline
    try:
        app = engine.get_app(spec.app)
    except NotFound:
        return FollowResult(False, None, None, "the Application no longer exists", None, (), elapsed)
    except Exception as exc:  # a failed look saw nothing: look again until the deadline
        if not timed_out:
            log.warning("could not read Application %s, looking again: %s", spec.app, exc)
            return None
        return FollowResult(False, None, None, f"could not read the Application: {exc}", None, (), elapsed)
    event_id = spec.event_id if spec.explicit else None
    return evaluate(app, event_id=event_id, since=spec.since, elapsed_s=elapsed, timed_out=timed_out)


def _result(data: dict[str, Any]) -> FollowResult:
    return FollowResult(**{**data, "waiting": tuple(data.get("waiting") or ())})


def _tell(engine: Engine, notify: Notify, spec: FollowSpec, result: FollowResult) -> None:
    dep = engine.set_rollout(
        spec.deployment_id,
        spec.app,
        phase=result.phase,
        health=result.health,
        message=result.summary(),
        status=rollout_status(result, True),
    )
    notify(follow_notices(result, team=spec.team, app=spec.app, event_id=spec.event_id, dep=dep))


def _record(store: SyncEventStore, spec: FollowSpec, action: Action) -> bool:
    """Append `action` to the event record once it has reached a final status. True when done (or there
    is nothing to do: recorded before, or the record is gone); False while the event is still running.
    Optimistic: concurrent writers of the record (another Application's chain) make this try again."""
    key = event_key(spec.event_id)
    with store.redis.pipeline(transaction=True) as pipe:
        for _ in range(WATCH_ATTEMPTS):
            try:
                pipe.watch(key)
                event = decode_event(pipe.get(key))
                if event is None:
                    return True
                if any(a.kind == "follow" and a.target == spec.app for a in event.actions):
                    return True
                if event.status not in FINAL_STATUSES:
                    return False
                reason = f"{event.reason}; " if event.reason else ""
                updated = event.model_copy(
                    update={
                        "actions": [*event.actions, action],
                        "reason": f"{reason}followed {spec.app}: {action.result}",
                        "updated_at": datetime.now(UTC),
                    }
                )
                pipe.multi()
                write_event(pipe, updated, ttl_s=store.retention_s, previous_status=event.status)
                pipe.execute()
                return True
            except WatchError:
                pipe.reset()
    raise redis.RedisError(f"event {spec.event_id} kept changing under us")
