"""A partition behind its end that gets nothing and no error is judged stuck after the bound, never before,
never while records arrive or it is caught up; each change is reported once, so it is logged once."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from dataflows.io.kafka_source import StallWatch

BOUND = 60.0


@dataclass(frozen=True)
class Poll:
    after_s: float  # since the previous poll
    lag: int | None  # None: no fetch answered yet
    records: bool
    error: str | None


# Records and errors rarer than silence, so long silences (the interesting part) are common.
polls = st.builds(Poll, st.floats(min_value=0, max_value=90, allow_nan=False),
                  st.one_of(st.none(), st.integers(min_value=0, max_value=5)), st.sampled_from([False] * 3 + [True]),
                  st.sampled_from([None] * 6 + ["UNKNOWN_SERVER_ERROR", "_TRANSPORT"]))  # fmt: skip
timelines = st.lists(polls, max_size=40)


def _run(timeline: list[Poll]) -> list[tuple[float, Poll, bool, tuple[bool, bool], str | None]]:
    """Feed the watch; per poll: time, poll, stuck after it, changes reported, failing after it."""
    watch, now, seen = StallWatch(BOUND), 1000.0, []
    for poll in timeline:
        now += poll.after_s
        changed = watch.observe(now, poll.lag, poll.records, poll.error)
        seen.append((now, poll, watch.stuck, changed, watch.failing))
    return seen


@given(timelines)
def test_never_stuck_while_records_arrive_or_caught_up(timeline: list[Poll]) -> None:
    for _, poll, stuck, _, _ in _run(timeline):
        if poll.records or not poll.lag:
            assert not stuck


@given(timelines)
def test_stuck_exactly_when_behind_and_silent_for_longer_than_the_bound(timeline: list[Poll]) -> None:
    silent_since = None  # the last poll that brought a record, an error, or no lag
    for now, poll, stuck, _, _ in _run(timeline):
        if silent_since is None or poll.records or poll.error or not poll.lag:
            silent_since = now
        assert stuck == (bool(poll.lag) and now - silent_since > BOUND)


@given(timelines)
def test_each_change_is_reported_once_and_only_changes(timeline: list[Poll]) -> None:
    stuck_before, failing_before = False, None
    for _, _, stuck, (stuck_changed, failing_changed), failing in _run(timeline):
        assert stuck_changed == (stuck != stuck_before)
        assert failing_changed == (failing != failing_before)
        stuck_before, failing_before = stuck, failing


@given(timelines)
def test_failing_from_an_error_until_a_record_or_a_quiet_bound(timeline: list[Poll]) -> None:
    last_error: tuple[float, str] | None = None
    for now, poll, _, _, failing in _run(timeline):
        if poll.error is not None:
            last_error = (now, poll.error)
            assert failing == poll.error
        elif poll.records or last_error is None or now - last_error[0] > BOUND:
            assert failing is None
            last_error = None if poll.records else last_error
        else:
            assert failing == last_error[1]


def test_a_partition_silent_below_its_end_is_stuck_after_the_bound_then_recovers_once() -> None:
    watch = StallWatch(BOUND)
    assert watch.observe(0.0, 0, False, None) == (False, False)  # caught up: the silence counts from here
    assert watch.observe(10.0, 3, False, None) == (False, False)  # behind
    assert watch.observe(60.0, 3, False, None) == (False, False)  # exactly the bound: not yet
    assert watch.observe(60.5, 3, False, None) == (True, False) and watch.stuck
    assert watch.observe(200.0, 3, False, None) == (False, False)  # still stuck: not reported again
    assert watch.observe(201.0, 1, True, None) == (True, False) and not watch.stuck
