"""Ingest stage: Debezium envelopes decoded and mapped to canonical changes, before the core."""
