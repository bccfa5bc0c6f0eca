"""Client properties pass through in librdkafka's names, never override a guarantee, never hold a secret."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from confluent_kafka import Producer
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from dataflows.io.kafka_client import KafkaConfigError, build, client_config, murmur2, partition_for, producer_config
from dataflows.settings import Settings
from dataflows.stack.local import LocalStack
from dataflows.stack.scratch import make_settings

SECRET = "s3cr3t-do-not-log"


def test_murmur2_is_kafkas_default_partitioner_hash() -> None:
    # Java's Utils.murmur2 on the vectors of Kafka's own UtilsTest (signed there, unsigned here).
    vectors = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
               b"a-little-bit-longer-string": -1486304829, b"abc": 479470107,
               b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971}  # fmt: skip
    assert {k: murmur2(k) for k in vectors} == {k: v & 0xFFFFFFFF for k, v in vectors.items()}


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=64))
def test_a_key_always_lands_in_one_of_the_partitions(key: bytes, partitions: int) -> None:
    assert 0 <= partition_for(key, partitions) < partitions


@pytest.mark.parametrize("key", ["acks", "enable.idempotence", "max.in.flight", "enable.auto.commit",
                                 "auto.offset.reset", "bootstrap.servers", "group.id"])  # fmt: skip
def test_a_property_that_carries_a_guarantee_is_refused(key: str) -> None:
    with pytest.raises(KafkaConfigError, match="set by Tidemark"):
        client_config("127.0.0.1:9092", {key: "1"})


@pytest.mark.parametrize("key", ["sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret",
                                 "sasl.jaas.config"])  # fmt: skip
def test_a_literal_secret_is_refused_and_not_repeated(key: str) -> None:
    with pytest.raises(KafkaConfigError) as refused:
        client_config("127.0.0.1:9092", {key: SECRET})
    assert SECRET not in str(refused.value)


def test_settings_refuse_a_literal_secret_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEMARK_KAFKA_PROPERTIES", f'{{"sasl.password": "{SECRET}"}}')
    with pytest.raises(ValidationError) as refused:
        Settings()
    assert "sasl.password" in str(refused.value) and SECRET not in str(refused.value)


def test_settings_pass_librdkafka_properties_through_as_text(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDEMARK_KAFKA_PROPERTIES", '{"security.protocol": "SASL_SSL", "linger.ms": 20, '
                       '"enable.ssl.certificate.verification": false, "sasl.password": "${env:KAFKA_PW}"}')  # fmt: skip
    assert Settings().kafka_properties == {"security.protocol": "SASL_SSL", "linger.ms": "20",
                                           "enable.ssl.certificate.verification": "false",
                                           "sasl.password": "${env:KAFKA_PW}"}  # fmt: skip


def test_a_secret_reference_is_resolved_only_in_the_client_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PW", SECRET)
    config = producer_config("127.0.0.1:9092", {"sasl.password": "${env:KAFKA_PW}", "linger.ms": "20"},
                             client_id="t", delivery_timeout_s=5)  # fmt: skip
    assert config["sasl.password"] == SECRET and config["linger.ms"] == "20"
    assert (config["acks"], config["enable.idempotence"], config["max.in.flight"]) == ("all", False, 1)


def test_an_unknown_property_is_refused_by_librdkafka_without_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_PW", SECRET)
    config = client_config("127.0.0.1:9092", {"sasl.password": "${env:KAFKA_PW}", "no.such.property": "1"})
    with pytest.raises(KafkaConfigError, match="no.such.property") as refused:
        build(Producer, config)
    assert SECRET not in str(refused.value)


def test_a_missing_secret_reference_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_PW_MISSING", raising=False)
    with pytest.raises(KafkaConfigError, match="KAFKA_PW_MISSING"):
        client_config("127.0.0.1:9092", {"sasl.password": "${env:KAFKA_PW_MISSING}"})


def test_a_secret_is_never_logged_even_with_every_librdkafka_debug_context(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_PW", SECRET)
    caplog.set_level(logging.DEBUG, logger="dataflows.io.rdkafka")
    config = producer_config("127.0.0.1:9", {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                                             "sasl.username": "tidemark", "sasl.password": "${env:KAFKA_PW}",
                                             "debug": "all"}, client_id="t", delivery_timeout_s=1)  # fmt: skip
    producer = build(Producer, config)
    producer.produce("t", b"v")
    producer.flush(1.5)  # connection refused, retried, the record times out: plenty of log lines
    lines = [r.getMessage() for r in caplog.records if r.name == "dataflows.io.rdkafka"]
    assert any("sasl.password" in line for line in lines)  # the configuration dump is there...
    assert not any(SECRET in line for line in lines)  # ...redacted
    assert SECRET not in capfd.readouterr().err  # and nothing went to stderr around logging


def test_the_stack_hands_the_properties_to_its_processes_as_references_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAFKA_PW", SECRET)
    properties = {"security.protocol": "SASL_SSL", "sasl.password": "${env:KAFKA_PW}"}
    env = LocalStack(make_settings(tmp_path, kafka_properties=properties)).settings_environment()
    assert SECRET not in str(env)
    monkeypatch.setenv("TIDEMARK_KAFKA_PROPERTIES", env["TIDEMARK_KAFKA_PROPERTIES"])
    assert Settings().kafka_properties == properties  # what a capture or dataflow process reads
