from __future__ import annotations

from collections.abc import Sequence

from dataflows.stack.drain import DrainState, wait_drained


def scripted(states: list[DrainState]):  # noqa: ANN201
    seen: list[DrainState] = []

    def probe(_urls: Sequence[str]) -> DrainState:
        state = states[min(len(seen), len(states) - 1)]
        seen.append(state)
        return state

    return probe, seen


def test_drained_only_once_lag_buffer_and_outputs_stand_still() -> None:
    probe, seen = scripted([DrainState(1, 5, 0, 0), DrainState(1, 0, 2, 3), DrainState(1, 0, 0, 10),
                            DrainState(1, 0, 0, 12), DrainState(1, 0, 0, 12), DrainState(1, 0, 0, 12)])  # fmt: skip
    lines: list[str] = []
    assert wait_drained(["u"], timeout_s=30, settle_s=0, echo=lines.append, probe=probe, every_s=0)
    assert len(seen) == 5  # the first two empty observations differ in outputs: an output batch was in flight
    assert lines[0].startswith("dataflow     draining: consumer lag 5") and "12 outputs acknowledged" in lines[-1]


def test_a_dataflow_that_does_not_answer_is_never_drained() -> None:
    probe, _ = scripted([DrainState(0, 0, 0, 0)])
    assert not wait_drained(["u"], timeout_s=0.05, settle_s=0, echo=lambda _l: None, probe=probe, every_s=0)


def test_gives_up_after_the_bound() -> None:
    probe, _ = scripted([DrainState(1, 3, 0, 0)])
    assert not wait_drained(["u"], timeout_s=0.05, settle_s=0, echo=lambda _l: None, probe=probe, every_s=0)


def test_captures_are_stopped_once_they_went_quiet() -> None:
    from dataflows.stack.drain import wait_captured

    counts = iter([1, 2, 3] + [3] * 1000)
    assert wait_captured(["u"], quiet_s=0.05, timeout_s=5.0, every_s=0.01, count=lambda _u: next(counts))
    busy = iter(range(10_000))
    assert not wait_captured(["u"], quiet_s=0.05, timeout_s=0.3, every_s=0.01, count=lambda _u: next(busy))
