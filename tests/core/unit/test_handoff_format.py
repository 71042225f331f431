"""The hand-off notification: one format, encoded and decoded in pgjobs.queue.handoff."""

import uuid
from datetime import datetime, timezone

import pytest

from pgjobs.queue import JobSpec, handoff


def test_a_notification_round_trips_into_the_job_it_hands_over():
    spec = JobSpec(kind="send_mail", queue="mail", payload={"to": "a@b"}, priority=-2, max_attempts=7,
                   backoff_base_ms=100, backoff_cap_ms=5000)
    token = uuid.uuid4()
    text = handoff.encode(2**62, 1_700_000_000.123456, handoff.note(spec), '{"to": "a@b"}')
    job = handoff.decode(text, token)
    assert (job.id, job.root_id, job.parent_id, job.kind, job.queue, job.priority, job.max_attempts,
            job.backoff_base_ms, job.backoff_cap_ms) == (2**62, 2**62, None, "send_mail", "mail", -2, 7, 100, 5000)
    assert job.run_at == datetime.fromtimestamp(1_700_000_000.123456, timezone.utc)
    assert (job.attempt, job.snoozes, job.lease_token, job.payload) == (1, 0, token, {"to": "a@b"})


def test_a_kind_or_queue_too_long_for_a_notification_gets_no_note():
    assert handoff.note(JobSpec(kind="k" * 1000)) is None


@pytest.mark.parametrize("text", ["", "[1,2]\n{}", "not json\n{}", '[1,2,"k","q",0,3,1,1]'])
def test_anything_else_is_refused(text):
    with pytest.raises((ValueError, TypeError)):
        handoff.decode(text, uuid.uuid4())
