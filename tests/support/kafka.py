"""Read topics of the real broker in tests (the reader lives in dataflows.bench.topics: `tidemark chaos` uses it too)."""

from dataflows.bench.topics import Message, TopicReader

__all__ = ["Message", "TopicReader"]
