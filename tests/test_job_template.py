"""Jobs stamped from a JobTemplate are the jobs rq would have written, and rq's workers run them."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import pytest
import redis
from rq import Callback, Queue, Retry, SimpleWorker
from rq.job import Job
from rq.utils import utcformat

from broker.job_template import JobTemplate, rq_time
from broker.store import assign_event_ids
from broker.store_accept import CommandRecorder
from handlers.models import utcnow


def _event_id(at: datetime) -> str:
    return assign_event_ids(at, 1)[0]


def mark_ran(event_id: str) -> str:
    return f"ran {event_id}"


def fail_always(event_id: str) -> None:
    raise RuntimeError(f"no luck for {event_id}")


FUNC = f"{__name__}.mark_ran"


def rq_job(queue: Queue, event_id: str, retry: Retry | None, on_failure: str | None) -> Job:
    """The job as rq itself writes it, on a real pipeline."""
    job = queue.create_job(
        FUNC,
        args=(event_id,),
        job_id=f"event-{event_id}-{uuid.uuid4().hex}",
        timeout=600,
        retry=retry,
        on_failure=Callback(on_failure) if on_failure else None,
    )
    with queue.connection.pipeline() as pipe:
        queue.enqueue_job(job, pipeline=pipe)
        pipe.execute()
    return Job.fetch(job.id, connection=queue.connection)


def stamped_job(queue: Queue, template: JobTemplate, event_id: str) -> Job:
    with queue.connection.pipeline() as pipe:
        template.enqueue(pipe, event_id)
        pipe.execute()
    job_ids = [job_id for job_id in queue.get_job_ids() if f"-{event_id}-" in job_id]
    assert len(job_ids) == 1
    return Job.fetch(job_ids[0], connection=queue.connection)


PER_JOB_FIELDS = ("created_at", "enqueued_at", "data", "description")


def fields(job: Job) -> dict[str, object]:
    """What rq stores for a job, less what differs from one job to the next."""
    stored = job.to_dict()
    return {name: value for name, value in stored.items() if name not in PER_JOB_FIELDS}


@pytest.mark.parametrize(
    ("retry", "on_failure"),
    [(None, None), (Retry(max=3, interval=[1, 5, 30]), f"{__name__}.mark_ran"), (Retry(max=1), None)],
)
def test_a_stamped_job_is_the_job_rq_writes(sync_redis: redis.Redis, retry, on_failure) -> None:
    queue = Queue("template-test", connection=sync_redis)
    template = JobTemplate(queue, FUNC, retry, on_failure)
    before = utcnow()
    mine, theirs = _event_id(before), _event_id(before)
    stamped = stamped_job(queue, template, mine)
    reference = rq_job(queue, theirs, retry, on_failure)

    assert fields(stamped) == fields(reference)
    assert stamped.func_name == reference.func_name == FUNC
    assert stamped.args == (mine,) and reference.args == (theirs,)
    assert stamped.description == reference.description.replace(theirs, mine)
    assert stamped.get_status() == reference.get_status() == "queued"
    assert re.fullmatch(f"event-{mine}-[0-9a-f]{{16}}", stamped.id)
    # Its own moment, not the template's.
    assert stamped.created_at is not None and stamped.enqueued_at is not None
    assert stamped.created_at.replace(tzinfo=UTC) >= before.replace(microsecond=0)
    # Every field rq stored with a value for its own job is stored for the stamped one too; the fields rq
    # stores empty are left out, which rq reads alike (the to_dict comparison above).
    theirs_stored = sync_redis.hgetall(reference.key)
    assert sync_redis.hgetall(stamped.key).keys() == {k for k, v in theirs_stored.items() if v != b""}
    assert any(v == b"" for v in theirs_stored.values())


def test_each_job_gets_its_own_id(sync_redis: redis.Redis) -> None:
    queue = Queue("template-test", connection=sync_redis)
    template = JobTemplate(queue, FUNC, None, None)
    event_id = _event_id(utcnow())
    with sync_redis.pipeline() as pipe:
        template.enqueue(pipe, event_id)
        template.enqueue(pipe, event_id)  # a replay queues the same event again
        pipe.execute()
    job_ids = queue.get_job_ids()
    assert len(job_ids) == len(set(job_ids)) == 2


def test_a_worker_runs_stamped_jobs_and_their_failure_callback(sync_redis: redis.Redis) -> None:
    queue = Queue("template-test", connection=sync_redis)
    ok = JobTemplate(queue, FUNC, None, None)
    failing = JobTemplate(queue, f"{__name__}.fail_always", None, f"{__name__}.mark_ran")
    first, second = _event_id(utcnow()), _event_id(utcnow())
    with sync_redis.pipeline() as pipe:
        ok.enqueue(pipe, first)
        failing.enqueue(pipe, second)
        pipe.execute()
    [done_id, failed_id] = queue.get_job_ids()

    SimpleWorker([queue], connection=sync_redis).work(burst=True)

    done = Job.fetch(done_id, connection=sync_redis)
    failed = Job.fetch(failed_id, connection=sync_redis)
    assert done.get_status() == "finished" and done.return_value() == f"ran {first}"
    assert failed.get_status() == "failed"
    assert "no luck for " + second in (failed.latest_result().exc_string or "")


class NonceQueue(Queue):
    """A queue whose jobs carry a per-job value the template cannot know how to fill in."""

    def create_job(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        job = super().create_job(*args, **kwargs)
        job.meta["nonce"] = uuid.uuid4().hex
        return job


def test_a_per_job_value_it_does_not_understand_fails_loudly(sync_redis: redis.Redis) -> None:
    with pytest.raises(RuntimeError, match="does not understand"):
        JobTemplate(NonceQueue("template-test", connection=sync_redis), FUNC, None, None)


class UntypedQueue(Queue):
    """A queue that writes a job field with no value, which redis-py would refuse and MessagePack would
    carry as a nil that shifts the script's arguments."""

    def enqueue_job(self, job, pipeline=None, **kwargs):  # type: ignore[no-untyped-def]
        if pipeline is not None:
            pipeline.execute_command("HSET", job.key, "extra", None)
        return super().enqueue_job(job, pipeline=pipeline, **kwargs)


def test_a_value_that_is_not_text_fails_loudly(sync_redis: redis.Redis) -> None:
    with pytest.raises(RuntimeError, match="not text"):
        JobTemplate(UntypedQueue("template-test", connection=sync_redis), FUNC, None, None)


def test_a_template_records_without_touching_redis(sync_redis: redis.Redis) -> None:
    queue = Queue("template-test", connection=sync_redis)
    recorder = CommandRecorder()
    JobTemplate(queue, FUNC, None, None).enqueue(recorder, _event_id(utcnow()))
    assert recorder.commands and sync_redis.dbsize() == 0
    assert {command[0] for command in recorder.commands} >= {"HSET", "RPUSH"}


def test_times_are_written_as_rq_writes_them() -> None:
    # In and out of seconds, so that the text kept for one second is not reused for another.
    for second, microsecond in [(4, 0), (4, 7), (5, 999_999), (4, 999_999), (59, 1)]:
        moment = datetime(2026, 11, 27, 6, 5, second, microsecond, tzinfo=UTC)
        epoch_us = int(moment.replace(microsecond=0).timestamp()) * 1_000_000 + microsecond
        assert rq_time(epoch_us) == utcformat(moment)
