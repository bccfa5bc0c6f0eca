"""`tidemark demo`: play a customer's story into the local ERP and CRM and show the traffic it causes."""

from __future__ import annotations

import argparse
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from dataflows.bench.workload import vat_de
from dataflows.io.kafka_client import build, client_config
from dataflows.outputs import CUSTOMERS_TOPIC, DLQ_TOPIC, GOVERNANCE_TOPIC, LIFECYCLE_TOPIC
from dataflows.settings import Settings
from dataflows.stack.local import LocalStack

Step = tuple[str, str, str, tuple[Any, ...]]  # (system, description, SQL, parameters)


def scenario(tag: str) -> list[Step]:
    """One customer from prospect to credit hold and back; `tag` keeps repeated runs apart."""
    name = f"Acme Analytics {tag}"
    tax = vat_de(int(tag))  # a valid VAT number: identity links by checked tax ids only
    return [
        ("crm", "sales creates a prospect account",
         "INSERT INTO accounts (name, domain, industry, owner, stage, tax_id, country) "
         "VALUES (%s, %s, 'software', 'dana@sales', 'prospect', %s, 'DE')",
         (name, f"acme-{tag}.example", tax)),
        ("crm", "an opportunity is opened",
         "INSERT INTO opportunities (account_id, name, stage, amount) "
         "SELECT id, 'Platform deal', 'open', 48000.00 FROM accounts WHERE tax_id = %s", (tax,)),
        ("crm", "the opportunity is won",
         "UPDATE opportunities o JOIN accounts a ON a.id = o.account_id SET o.stage = 'won' WHERE a.tax_id = %s",
         (tax,)),
        ("erp", "finance creates the legal customer",
         "INSERT INTO erp.customers (legal_name, tax_id, country, payment_terms, credit_limit) "
         "VALUES (%s, %s, 'DE', 'NET30', 50000.00)", (f"{name} GmbH", tax)),
        ("erp", "a billing account is opened and approved",
         "INSERT INTO erp.billing_accounts (customer_id, currency, approval_status) "
         "SELECT id, 'EUR', 'approved' FROM erp.customers WHERE tax_id = %s", (tax,)),
        ("erp", "the subscription is activated",
         "INSERT INTO erp.subscriptions (customer_id, plan, seats, status, period_start) "
         "SELECT id, 'growth', 25, 'active', current_date FROM erp.customers WHERE tax_id = %s", (tax,)),
        ("erp", "an invoice goes overdue: credit hold",
         "UPDATE erp.customers SET credit_status = 'hold', updated_at = now() WHERE tax_id = %s", (tax,)),
        ("erp", "the invoice is paid: hold released",
         "UPDATE erp.customers SET credit_status = 'ok', updated_at = now() WHERE tax_id = %s", (tax,)),
    ]  # fmt: skip


SHOWN_TOPICS = re.compile(r"^(erp|crm)\..*|^tidemark\..*")


def _assign_new(consumer: Consumer, assigned: set[tuple[str, int]]) -> None:
    """Topics appear as the demo creates them: read each new partition from its start."""
    try:
        listed = consumer.list_topics(timeout=5).topics
    except KafkaException:
        return
    new = {(t, p) for t, m in listed.items() if SHOWN_TOPICS.match(t) and m.error is None for p in m.partitions}
    new -= assigned
    if new:
        consumer.incremental_assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in sorted(new)])
        assigned |= new


def _tail(settings: Settings, stop: threading.Event, done: threading.Event, echo: Callable[[str], None]) -> None:
    since_ms = int(time.time() * 1000)  # older records are skipped by their time
    consumer = build(Consumer, client_config(settings.kafka_bootstrap, settings.kafka_properties,
                                             group_id="tidemark-demo", fetch_wait_max_ms=100))  # fmt: skip
    assigned: set[tuple[str, int]] = set()
    while not stop.is_set():
        _assign_new(consumer, assigned)
        for message in consumer.consume(1000, timeout=0.2):
            if message.error() is not None or message.timestamp()[1] < since_ms:
                continue
            line = describe(message.topic(), message.value())
            if line:
                echo(line)
            if b"CreditHoldReleased" in (message.value() or b"") and message.topic() == LIFECYCLE_TOPIC:
                done.set()
    consumer.close()


def _by(record: dict[str, Any], name: str) -> str:
    """' (by erp)': who wrote a golden field, from its provenance (one entry per write, naming its fields)."""
    written = next((w for w in record.get("provenance", []) if name in w.get("fields", ())), None)
    return f" (by {written['system']})" if written else ""


def describe(topic: str, value: bytes | None) -> str | None:
    """A one-line summary of a captured change or a Tidemark output; None for what is not worth a line."""
    if value is None:
        return None
    data = orjson.loads(value)
    if topic == LIFECYCLE_TOPIC:
        return f"     EVENT {data['event_type']:<24} customer {data['customer_id'][:8]}  {orjson.dumps(data['payload']).decode()}"
    if topic == CUSTOMERS_TOPIC:
        return (f"     GOLDEN customer {data['customer_id'][:8]} v{data['version']:<3} status={data['lifecycle_status']:<11} "
                f"credit={data.get('credit_status')}{_by(data, 'credit_status')}  linked={data['source_ids']}")  # fmt: skip
    if topic == GOVERNANCE_TOPIC:  # only where the policy intervened: owners' writes are provenance
        return f"     GOVERNANCE {data['decision']:<9} {data['field']}={data['proposed_value']!r} from {data['source_system']}: {data['reason']}"
    if topic == DLQ_TOPIC:
        return f"     DLQ {data['error_class']}: {data['reason']}"
    if isinstance(data, dict) and "op" in data:
        row = data.get("after") or data.get("before") or {}
        before = data.get("before") or {}
        if data["op"] == "u" and row.get("tidemark_version") != before.get("tidemark_version"):
            facts = {k: row.get(k) for k in ("erp_customer_id", "credit_status", "lifecycle_status")}
            return f"  captured {topic:<24} op=u  (Tidemark's write-back into the CRM: {facts}; echo, ignored)"
        shown = {k: v for k, v in row.items() if k not in ("created_at", "updated_at", "notes", "tidemark_version") and v is not None}
        return f"  captured {topic:<24} op={data['op']}  {orjson.dumps(shown).decode()[:100]}"
    return None


def run_demo(settings: Settings, pause_s: float, echo: Callable[[str], None] = print) -> int:
    stack = LocalStack(settings)
    stop, done = threading.Event(), threading.Event()
    tail = threading.Thread(target=_tail, args=(settings, stop, done, echo), daemon=True)
    tail.start()
    time.sleep(2.0)  # let the consumer join before the first change
    if not _wait_streaming(settings, _heartbeat_topics(stack), timeout_s=120.0):
        echo("(the captures have not started streaming within 120 s: see `tidemark status`)")
    tag = time.strftime("%H%M%S")
    erp = stack.erp_admin()
    crm = stack.crm_admin()
    try:
        for system, text, statement, params in scenario(tag):
            echo(f"{system.upper()}: {text}")
            if system == "erp":
                erp.execute(statement, params)
            else:
                with crm.cursor() as cur:
                    cur.execute(statement, params)
            time.sleep(pause_s)
        if not done.wait(timeout=60):
            echo("(the dataflow has not caught up within 60 s: see `tidemark status` and .tidemark/logs/dataflow-0.log)")
        time.sleep(2.0)
    finally:
        stop.set()
        tail.join(timeout=5)
        erp.close()
        crm.close()
    echo("demo done: the stack keeps running. Look around:")
    echo("  tidemark status                      components and their state")
    echo("  tidemark dlq list                    dead letters (none, unless you send bad records)")
    echo("  psql/mariadb (see README)            customer_360 in database `tidemark`, the CRM's accounts")
    echo("  tidemark down                        stop everything")
    return 0


def _heartbeat_topics(stack: LocalStack) -> list[str]:
    return [c.heartbeat_topic for c in stack.connectors().values() if c.heartbeat_topic]


def _wait_streaming(settings: Settings, topics: list[str], timeout_s: float) -> bool:
    """True once every capture sent a heartbeat: its first snapshot is done and it streams, so the story's
    changes arrive one by one (inserts, updates), not folded into a snapshot of how they ended."""
    consumer = build(Consumer, client_config(settings.kafka_bootstrap, settings.kafka_properties,
                                             group_id="tidemark-demo"))  # fmt: skip
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            try:
                if all(consumer.get_watermark_offsets(TopicPartition(t, 0), timeout=5)[1] > 0 for t in topics):
                    return True
            except KafkaException:
                pass  # a topic not created yet
            time.sleep(0.5)
        return False
    finally:
        consumer.close()


def add_demo_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="play a customer lifecycle into ERP and CRM and show the traffic")
    p.add_argument("--pause", type=float, default=1.5, help="seconds between steps")

    def _run(args: argparse.Namespace) -> int:
        return run_demo(Settings(), args.pause)

    p.set_defaults(func=_run)
