"""Stopping an engine on purpose interrupts the batch in flight: that is the stop, not an error to print."""

from __future__ import annotations

import logging

from dataflows.capture.engine import InterruptedByStop


def _record(exc: BaseException | None, logger: str = "pydbzengine._jvm") -> logging.LogRecord:
    exc_info = (type(exc), exc, None) if exc is not None else None
    return logging.LogRecord(logger, logging.ERROR, __file__, 1, "Failed to consume events in python", (), exc_info)


def _java_interrupted() -> BaseException:
    """An exception of the class name JPype gives java.lang.InterruptedException (no JVM in unit tests)."""
    return type("java.lang.InterruptedException", (Exception,), {})("java.lang.InterruptedException")


def test_only_the_interruption_of_a_stop_is_kept_out_of_the_error_log() -> None:
    quiet = InterruptedByStop()
    assert quiet.filter(_record(_java_interrupted())) is False
    assert quiet.filter(_record(RuntimeError("broker unreachable"))) is True  # a real failure is still logged
    assert quiet.filter(_record(None)) is True
    assert quiet.interrupted == 1  # said once, at info level, by the one who stopped the engine


def test_the_filter_is_on_pydbzengines_logger_only_while_stopping() -> None:
    from dataflows.capture.engine import EngineRunner

    jvm_log = logging.getLogger("pydbzengine._jvm")

    class Engine:
        """Closing it interrupts the batch in flight, as Debezium's engine does: pydbzengine logs that."""

        def run(self) -> None:
            pass

        def close(self) -> None:
            jvm_log.error("Failed to consume events in python", exc_info=(Exception, _java_interrupted(), None))

    runner = EngineRunner("erp", lambda _completion: Engine())
    logged: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = logged.append  # type: ignore[method-assign]
    jvm_log.addHandler(handler)
    try:
        runner.start()
        runner.stop()
        assert logged == []
        runner.engine.close()  # not stopping: an interruption is an error like any other
        assert len(logged) == 1
        assert jvm_log.filters == []
    finally:
        jvm_log.removeHandler(handler)
