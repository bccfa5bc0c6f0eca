"""Kafka in tests: read topics of the real broker (the reader lives in dataflows.bench.topics: `tidemark
chaos` uses it too) and write raw records to it."""

from confluent_kafka import Producer

from dataflows.bench.topics import Message, TopicReader

__all__ = ["Message", "TopicReader", "produce"]


def produce(bootstrap: str, records: list[tuple[str, bytes | None, bytes | None]]) -> None:
    """Write (topic, key, value) records, each acknowledged by the broker (acks=all), or fail."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    failed: list[str] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(str(err))

    for topic, key, value in records:
        producer.produce(topic, value, key, on_delivery=report)
    assert producer.flush(30) == 0 and not failed, f"records not acknowledged: {failed[:3]}"
