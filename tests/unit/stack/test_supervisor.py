"""Backoff of the local stack's supervisor, and its durable restart counts (pure logic, a file)."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from dataflows.stack.supervisor import Backoff, RestartCounts, RestartPolicy

POLICY = RestartPolicy(initial_s=1.0, factor=2.0, max_s=60.0, stable_s=60.0)


def test_delays_double_up_to_the_ceiling() -> None:
    assert [POLICY.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]


@given(st.integers(min_value=1, max_value=500))
def test_delay_never_shrinks_and_never_exceeds_the_ceiling(n: int) -> None:
    assert POLICY.initial_s <= POLICY.delay(n) <= POLICY.max_s
    assert POLICY.delay(n) <= POLICY.delay(n + 1)


def test_a_crash_loop_waits_longer_each_time() -> None:
    backoff = Backoff(POLICY)
    now = 0.0
    waits = []
    for _ in range(5):
        backoff.seen_running(now)
        now += 0.5  # dies half a second after each start
        assert not backoff.seen_dead(now)  # never at once
        due = backoff.next_attempt_at
        assert due is not None
        waits.append(due - now)
        assert not backoff.seen_dead(due - 0.01)
        assert backoff.seen_dead(due)
        now = due
        backoff.restarted(now)
    assert waits == [1, 2, 4, 8, 16]


def test_a_process_that_ran_long_enough_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(POLICY)
    for now in (0.0, 1.0, 3.0):  # three quick deaths
        backoff.restarted(now)
        backoff.seen_dead(now + 0.1)
    assert backoff.consecutive == 3
    backoff.restarted(10.0)
    backoff.seen_running(10.0)
    assert not backoff.seen_dead(10.0 + POLICY.stable_s + 5)
    assert backoff.consecutive == 1
    assert backoff.next_attempt_at == 10.0 + POLICY.stable_s + 5 + POLICY.initial_s


def test_one_death_is_counted_once_however_often_it_is_seen() -> None:
    backoff = Backoff(POLICY)
    backoff.seen_running(0.0)
    for t in (1.0, 1.2, 1.4):
        backoff.seen_dead(t)
    assert backoff.consecutive == 1 and backoff.next_attempt_at == 2.0


def test_restart_counts_survive_in_a_private_file(tmp_path: Path) -> None:
    counts = RestartCounts(tmp_path)
    assert counts.add("capture-erp", "RuntimeError: boom") == 1
    assert counts.add("capture-erp", "KafkaTimeoutError: flush") == 2
    again = RestartCounts(tmp_path).read()  # a new process reads what the last one wrote
    assert again["capture-erp"]["restarts"] == 2
    assert again["capture-erp"]["last_reason"] == "KafkaTimeoutError: flush"
    assert oct(counts.path.stat().st_mode & 0o777) == "0o600"
    assert oct(counts.path.parent.stat().st_mode & 0o777) == "0o700"
