from __future__ import annotations

from collections.abc import Sequence

from dataflows.dialects.base import LiveReadError
from dataflows.stack.drain import DrainState, wait_drained, wait_sent


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


def answers(*replies: bool | Exception):  # noqa: ANN201
    """A sent-check that gives `replies` in turn (the last one forever) and counts its calls."""
    calls: list[int] = []

    def check() -> bool:
        reply = replies[min(len(calls), len(replies) - 1)]
        calls.append(1)
        if isinstance(reply, Exception):
            raise reply
        return reply

    return check, calls


def test_captures_stop_only_once_every_database_has_sent_them_everything() -> None:
    erp, erp_calls = answers(False, LiveReadError("OperationalError: restarting"), True)
    crm, crm_calls = answers(True, False)  # a mark once passed stays passed: never asked again
    assert wait_sent({"capture-erp": erp, "capture-crm": crm}, timeout_s=30, echo=lambda _l: None, every_s=0) == []
    assert len(erp_calls) == 3 and len(crm_calls) == 1


def test_a_capture_that_never_catches_up_is_named_after_the_bound() -> None:
    lines: list[str] = []
    never, _ = answers(False)
    done, _ = answers(True)
    behind = wait_sent({"capture-erp": never, "capture-crm": done}, timeout_s=3.2, echo=lines.append, every_s=0.1)
    assert behind == ["capture-erp"]
    assert lines and all("capture-erp behind" in line and "capture-crm" not in line for line in lines)
