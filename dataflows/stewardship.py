"""Data stewards' identity decisions as input records on `tidemark.stewardship.v1` (one partition, so
decisions apply in the order they were made; replayed after a crash with the same effect).

    tidemark identity split <golden id> crm:7 [...]   -> these source customers are another company
    tidemark identity join <a> <b>                    -> two source or golden customers are one
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from dataflows.core.inputs import StewardCommand

STEWARDSHIP_TOPIC = "tidemark.stewardship.v1"
STEWARDSHIP_PARTITIONS = 1  # one total order of decisions


class StewardRecordError(ValueError):
    """A stewardship record that is not a valid command (it goes to the DLQ with this reason)."""


def command_record(action: str, targets: list[str], *, customer_id: str | None, requested_by: str,
                   reason: str = "") -> tuple[bytes, bytes]:  # fmt: skip
    """(key, value) of a new command: the key is its golden customer (or its first target)."""
    body = {"command_id": str(uuid.uuid4()), "action": action, "targets": targets, "customer_id": customer_id,
            "requested_by": requested_by, "requested_at": datetime.now(UTC).isoformat(), "reason": reason,
            "schema_version": 1}  # fmt: skip
    return (customer_id or targets[0]).encode(), orjson.dumps(body)


def parse_command(value: bytes | None, origin: Any = None) -> StewardCommand:
    """The command in a stewardship record; StewardRecordError says what is wrong with it."""
    try:
        body = orjson.loads(value or b"")
        action, targets = body["action"], body["targets"]
        if action not in ("split", "join") or not isinstance(targets, list) or not targets:
            msg = f"action must be split or join with a list of targets, not {action!r} / {targets!r}"
            raise StewardRecordError(msg)
        at = datetime.fromisoformat(body["requested_at"])
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return StewardCommand(str(body["command_id"]), action, tuple(str(t) for t in targets),
                              str(body.get("requested_by") or "unknown"), at, body.get("customer_id"),
                              str(body.get("reason") or ""), origin)  # fmt: skip
    except StewardRecordError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        msg = f"not a stewardship command ({type(e).__name__}: {e})"
        raise StewardRecordError(msg) from None


# -- the CLI: `tidemark identity explain|split|join` ------------------------------------------------
def send_command(bootstrap: str, key: bytes, value: bytes, properties: Mapping[str, str] | None = None) -> None:
    """Append a command to the stewardship topic, acknowledged by every in-sync replica."""
    from confluent_kafka import Producer

    from dataflows.io.kafka_client import Outgoing, build, deliver, producer_config

    config = producer_config(bootstrap, properties, client_id="tidemark-steward", delivery_timeout_s=30)
    delivery = deliver(build(Producer, config), [Outgoing(STEWARDSHIP_TOPIC, key, value)], 35)
    if delivery.failed:
        msg = f"the stewardship command was not acknowledged by Kafka: {delivery.first_error}"
        raise RuntimeError(msg)


def explain(conninfo: str, customer_id: str) -> dict[str, Any] | None:
    """A golden customer's source customers and the evidence linking them, from customer_360 (following
    merges to the surviving customer)."""
    import psycopg

    with psycopg.connect(conninfo, connect_timeout=10) as conn:
        retired_chain = []
        for _ in range(100):  # a merge chain is short; a cycle would be a bug, not a reason to hang
            row = conn.execute("SELECT record, merged_into FROM customer_360 WHERE customer_id = %s",
                               (customer_id,)).fetchone()  # fmt: skip
            if row is None or row[1] is None:
                break
            retired_chain.append(customer_id)
            customer_id = row[1]
    if row is None:
        return None
    record = row[0] if isinstance(row[0], dict) else orjson.loads(row[0])
    return {"customer_id": customer_id, "merged_from": retired_chain, "source_ids": record.get("source_ids", {}),
            "links": record.get("links", []), "lifecycle_status": record.get("lifecycle_status")}  # fmt: skip


def _print_explanation(found: dict[str, Any]) -> None:
    for old in found["merged_from"]:
        print(f"{old} was merged away")
    print(f"golden customer {found['customer_id']} ({found['lifecycle_status']})")
    refs = [f"{system}:{i}" for system, ids in sorted(found["source_ids"].items()) for i in ids]
    print(f"  source customers: {', '.join(refs) or 'none'}")
    if not found["links"]:
        print("  linked by: nothing (a single source customer)")
    for link in found["links"]:
        values = f" = {' / '.join(link['values'])}" if link["values"] else ""
        print(f"  {link['a']} <-> {link['b']}  by {link['rule']}{values}")


def cmd_explain(args: Any) -> int:
    import json

    from dataflows.stack.local import LocalStack

    found = explain(LocalStack(_settings()).ops_conninfo(), args.customer_id)
    if found is None:
        print(f"error: no golden customer {args.customer_id!r} in customer_360", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        _print_explanation(found)
    return 0


def cmd_command(args: Any) -> int:
    if args.identity_command == "split":
        key, value = command_record("split", args.refs, customer_id=args.customer_id, requested_by=args.by,
                                    reason=args.reason)  # fmt: skip
    else:
        key, value = command_record("join", [args.a, args.b], customer_id=None, requested_by=args.by,
                                    reason=args.reason)  # fmt: skip
    settings = _settings()
    send_command(settings.kafka_bootstrap, key, value, settings.kafka_properties)
    print(f"{args.identity_command} recorded on {STEWARDSHIP_TOPIC} (command {orjson.loads(value)['command_id']}); "
          "the dataflow applies it in order")
    return 0


def _settings() -> Any:
    from dataflows.settings import Settings

    return Settings()


def add_identity_parser(sub: Any) -> None:
    identity = sub.add_parser("identity", help="why source customers are linked; a steward's split and join")
    commands = identity.add_subparsers(dest="identity_command", required=True)
    p = commands.add_parser("explain", help="which source customers a golden customer links, and why")
    p.add_argument("customer_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)
    p = commands.add_parser("split", help="these source customers are another company than the rest")
    p.add_argument("customer_id", help="the golden customer that wrongly holds them")
    p.add_argument("refs", nargs="+", help="source customers to split off, as system:id (e.g. crm:7)")
    p = commands.add_parser("join", help="two source (system:id) or golden customers are one company")
    p.add_argument("a")
    p.add_argument("b")
    for name in ("split", "join"):
        p = commands.choices[name]
        p.add_argument("--by", default=os.environ.get("USER", "steward"), help="who decides (recorded)")
        p.add_argument("--reason", default="", help="why (recorded)")
        p.set_defaults(func=cmd_command)
