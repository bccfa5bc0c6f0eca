"""The `tidemark` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

from dataflows.bench.report import RUNNERS
from dataflows.config.connectors import (
    ConnectorConfigError,
    connect_config,
    connector_files,
    embedded_properties,
    load_connector,
)
from dataflows.config.secrets import SecretError
from dataflows.io.kafka_client import KafkaConfigError
from dataflows.settings import Settings
from dataflows.stack.local import LocalStack


def _stack() -> LocalStack:
    return LocalStack(Settings())


def cmd_up(args: argparse.Namespace) -> int:
    from dataflows.stack.local import HomeNotUsableError
    from dataflows.stack.processes import StartupError

    try:
        _stack().up(capture=not args.no_capture)
    except HomeNotUsableError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except StartupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("stack is up: `tidemark status` shows it, `tidemark down` stops it")
    return 0


def cmd_down(_args: argparse.Namespace) -> int:
    _stack().down()
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    try:
        _stack().restart(args.component)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_supervise(_args: argparse.Namespace) -> int:
    import signal
    import threading

    from dataflows.stack.supervisor import run_supervisor

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: stop.set())
    signal.signal(signal.SIGINT, lambda _s, _f: stop.set())
    run_supervisor(_stack(), stop)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    rows = _stack().status()
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        for r in rows:
            where = next(iter(r.endpoint.values()), "")
            print(f"{r.name:<14} {r.state:<5} pid={r.pid or '-':<8} {where}")
            d = r.detail
            if r.kind == "capture" and d:
                lag = d.get("source_lag_seconds")
                print(f"{'':<14} source lag {'-' if lag is None else f'{lag:.1f}s'}, "
                      f"{d.get('changes_captured', d.get('records_delivered', 0))} changes captured, state {d.get('state')}"
                      + (f", slot retains {d['retained_wal_bytes']} WAL bytes" if d.get("retained_wal_bytes") else ""))  # fmt: skip
            elif r.kind == "dataflow" and d.get("consumer_lag_messages") is not None:
                print(f"{'':<14} consumer lag {d['consumer_lag_messages']} messages, reorder buffer {d['reorder_buffer_depth']}, "
                      f"{d['golden_customers']} golden customers, {d['lifecycle_events']} events, "
                      f"{d['dead_letters'] if d['dead_letters'] is not None else '?'} open dead letters")  # fmt: skip
            if d.get("restarts"):
                print(f"{'':<14} restarted {d['restarts']} time(s) by the supervisor; last reason: {d.get('last_restart_reason')}")
            if d.get("last_error"):
                print(f"{'':<14} last error: {d['last_error']}")
    return 0 if all(r.state == "up" for r in rows) else 3


def cmd_capture(args: argparse.Namespace) -> int:
    from dataflows.capture.engine import run_capture

    stack = _stack()
    path = stack.settings.connectors_dir / f"{args.source}.yaml"
    if not path.exists():
        known = ", ".join(p.stem for p in connector_files(stack.settings.connectors_dir))
        print(f"error: no connector file {path} (known sources: {known})", file=sys.stderr)
        return 2
    try:
        config = load_connector(path)
        state_dir = stack.capture_state_dir(config.name)
        props = embedded_properties(config, state_dir, stack.runtime_defaults())
    except (ConnectorConfigError, SecretError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    code = run_capture(
        config.name,
        props,
        state_dir=state_dir,
        log_dir=stack.table.log_dir,
        bootstrap=stack.settings.kafka_bootstrap,
        kafka_properties=stack.settings.kafka_properties,
        partitions=config.partitions or stack.settings.topic_partitions,
        metrics_port=stack.capture_metrics_port(config.name),
        metrics_host=stack.settings.metrics_host,
    )
    # Exit now: the JVM's non-daemon threads (a half-stopped engine, Kafka clients) would otherwise keep the
    # process alive after a failure, deaf to SIGTERM (whose handler only asks a loop that ended to stop).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def cmd_run(args: argparse.Namespace) -> int:
    from dataflows.runtime import parse_addresses, run_dataflow

    stack = _stack()
    try:
        addresses = parse_addresses(args.addresses or stack.settings.cluster_addresses)
    except ValueError as e:
        return _refuse(str(e))
    processes = len(addresses) or args.processes or stack.settings.dataflow_processes
    if addresses and args.processes and args.processes != len(addresses):
        return _refuse(f"--processes {args.processes} but {len(addresses)} cluster addresses: give one address per process")
    if not 0 <= args.process_id < processes:
        return _refuse(f"--process-id {args.process_id} is outside the cluster of {processes} processes (0..{processes - 1})")
    return run_dataflow(stack, process_id=args.process_id, processes=processes, addresses=addresses or None)


def _refuse(message: str) -> int:
    print(f"tidemark run: {message}", file=sys.stderr)
    return 2


def cmd_sources_list(_args: argparse.Namespace) -> int:
    settings = Settings()
    for path in connector_files(settings.connectors_dir):
        try:
            c = load_connector(path)
        except ConnectorConfigError as e:
            print(f"{path.stem:<10} INVALID ({len(e.problems)} problems: tidemark sources validate)")
            continue
        print(f"{c.name:<10} {c.dialect.name:<9} system={c.system:<6} tables={','.join(c.tables)}")
    return 0


def cmd_sources_render(args: argparse.Namespace) -> int:
    settings = Settings()
    config = load_connector(settings.connectors_dir / f"{args.source}.yaml")
    if args.format == "connect":
        print(json.dumps(connect_config(config), indent=2, sort_keys=True))
    else:
        # Embedded properties with references left unresolved: never print a resolved secret.
        props = {k: str(v) for k, v in config.debezium.items()}
        print("\n".join(f"{k}={v}" for k, v in sorted(props.items())))
    return 0


def cmd_sources_register(args: argparse.Namespace) -> int:
    """PUT every connector's rendered config into Kafka Connect (create or update)."""
    import urllib.request

    settings = Settings()
    for path in connector_files(settings.connectors_dir):
        config = load_connector(path)
        body = json.dumps(connect_config(config, bootstrap=args.kafka_bootstrap)).encode()
        request = urllib.request.Request(
            f"{args.connect_url.rstrip('/')}/connectors/{config.name}/config",
            data=body, method="PUT", headers={"Content-Type": "application/json"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as response:
            print(f"{config.name}: registered (HTTP {response.status})")
    return 0


def cmd_sources_validate(args: argparse.Namespace) -> int:
    """Every problem of every file in one run; with --against-db also the columns of the live tables."""
    from dataflows.config.checks import validate_files
    from dataflows.config.live import validate_against_databases

    settings = Settings()
    files = [Path(f) for f in args.files] or connector_files(settings.connectors_dir)
    if args.against_db:
        result = validate_against_databases(files, _stack().runtime_defaults())
    else:
        result = validate_files(files)
    for problem in result.problems:
        print(problem, file=sys.stderr)
    bad = {p.file for p in result.problems}
    for path in files:
        if path not in bad:
            print(f"{path}: ok")
    if bad:
        print(f"{len(result.problems)} problem(s) in {len(bad)} file(s)", file=sys.stderr)
    return 1 if bad else 0


def cmd_schemas_export(_args: argparse.Namespace) -> int:
    from schemas.export import export

    for path in export():
        print(path)
    return 0


def cmd_schemas_check(_args: argparse.Namespace) -> int:
    from schemas.export import drift

    problems = drift()
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print("JSON Schemas drifted from the models: run `tidemark schemas export` and commit", file=sys.stderr)
        return 1
    print("JSON Schemas match the models")
    return 0


def _dlq_filter(args: argparse.Namespace):  # noqa: ANN202
    from dataflows.dlq import DlqFilter, parse_since
    from dataflows.targets.dead_letters import STATES

    states = tuple(getattr(args, "state", None) or STATES)
    return DlqFilter(since=parse_since(args.since), reason=args.reason, source=args.source, states=states)


def cmd_dlq_list(args: argparse.Namespace) -> int:
    from dataflows.dlq import read

    records = read(_stack().ops_conninfo(), _dlq_filter(args))
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    for r in records:
        print(f"{r['dead_letter_id']}  {r['failed_at'][:19]}  {r['state']:<9} {r['stage']:<6} {r['error_class']:<22} "
              f"{r.get('source') or '-':<8} {r['topic']}[{r['partition']}]@{r['offset']}  {r['reason'][:80]}")  # fmt: skip
    print(f"{len(records)} dead letter(s)")
    return 0


def cmd_dlq_show(args: argparse.Namespace) -> int:
    from dataflows.dlq import DlqFilter, read

    matches = [r for r in read(_stack().ops_conninfo(), DlqFilter()) if r["dead_letter_id"].startswith(args.id)]
    if len(matches) != 1:
        print(f"error: {len(matches)} dead letters match {args.id!r}", file=sys.stderr)
        return 2
    print(json.dumps(matches[0], indent=2))
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from dataflows.dlq import read, replay

    stack = _stack()
    records = read(stack.ops_conninfo(), _dlq_filter(args))
    if args.ids:
        records = [r for r in records if any(r["dead_letter_id"].startswith(i) for i in args.ids)]
    records = [r for r in records if r["state"] in ("open", "replayed")]  # resolved/discarded stay so
    if args.dry_run:
        print(f"would replay {len(records)} dead letter(s)")
        return 0
    sent = replay(stack.settings.kafka_bootstrap, stack.ops_conninfo(), records, stack.settings.kafka_properties)
    print(f"replayed {sent} dead letter(s) into their capture topics")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Every figure as a table row, or with --json as one JSON line on stdout (progress and errors on stderr).
    A failed stage is reported and the others still run; the exit code says whether any failed."""
    from dataflows.bench.report import conditions_shown_once, json_stdout, machine, run_stage, stage_names
    from dataflows.bench.measurement import Table

    failed, human = [], Table(conditions_shown_once(args.quick))
    with json_stdout() if args.json else contextlib.nullcontext(sys.stdout) as out:
        if not args.json:
            print(f"machine: {machine()}", flush=True)
        for stage in stage_names(args.what):
            print(f"bench {stage}: running{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
            try:
                for m in run_stage(stage, args.quick):  # each figure printed as soon as it is measured
                    lines = [m.json_line()] if args.json else human.rows(m)
                    out.write("".join(f"{line}\n" for line in lines))
                    out.flush()
            except Exception as e:  # one stage's failure must not lose the others' figures
                logging.getLogger("tidemark.bench").exception("bench %s failed", stage)
                failed.append(f"{stage}: {e}")
    for problem in failed:
        print(f"bench failed: {problem}", file=sys.stderr)
    return 1 if failed else 0


def cmd_soak(args: argparse.Namespace) -> int:
    from dataflows.bench.report import MIB, machine
    from dataflows.bench.soak import GROWS_BY_DESIGN, run

    print(f"machine: {machine()}", flush=True)
    r = run(minutes=args.minutes, rate=args.rate, echo=lambda line: print(line, flush=True))
    print(f"soak: {r.minutes:g} min of mixed ERP and CRM traffic, {r.statements:,} statements "
          f"({r.statements / (r.minutes * 60):,.0f}/s achieved of {r.rate}/s asked)")
    for name in sorted(r.samples):
        start, end = r.growth(name)
        verdict = "holds every record in memory" if name in GROWS_BY_DESIGN else "flat" if r.flat(name) else "GROWING"
        print(f"  {name:<14} RSS after warm-up {start / MIB:,.0f} MiB, at the end {end / MIB:,.0f} MiB: {verdict}")
    drained = f"{r.drained_after_s:.0f} s" if r.drained_after_s is not None else "NOT within 300 s"
    print(f"  lag and reorder buffer back to zero {drained} after the load stopped; {r.dead_letters} dead letters")
    ok = r.drained_after_s is not None and all(r.flat(n) for n in r.samples if n not in GROWS_BY_DESIGN)
    return 0 if ok else 1


def _add_stack_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("up", help="start the local stack (idempotent)")
    p.add_argument("--no-capture", action="store_true", help="start databases and broker only")
    p.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop what `up` started").set_defaults(func=cmd_down)
    p = sub.add_parser("restart", help="stop one component and start it again (e.g. capture-erp, dataflow, kafka)")
    p.add_argument("component")
    p.set_defaults(func=cmd_restart)
    sub.add_parser("supervise", help="the local stack's supervisor (`up` starts it)").set_defaults(func=cmd_supervise)
    p = sub.add_parser("status", help="state of every component; exit 3 if any is down")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("capture", help="run one source's capture in the foreground")
    p.add_argument("source")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("run", help="run the dataflow in the foreground (one process of its cluster)")
    p.add_argument("--process-id", type=int, default=0, help="this process's index in the cluster")
    p.add_argument("--processes", type=int, default=0, help="cluster size (default TIDEMARK_DATAFLOW_PROCESSES)")
    p.add_argument("--addresses", default="", help="host:port of every process, comma-separated, in process-id "
                   "order: a cluster across hosts (default TIDEMARK_CLUSTER_ADDRESSES, else loopback)")
    p.set_defaults(func=cmd_run)


def _add_sources_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    sources = sub.add_parser("sources", help="connector files under connectors/").add_subparsers(
        dest="sources_command", required=True
    )
    sources.add_parser("list").set_defaults(func=cmd_sources_list)
    p = sources.add_parser("validate", help="check connector files; problems as file:line: key: message; fix")
    p.add_argument("files", nargs="*")
    p.add_argument("--against-db", action="store_true",
                   help="also check every mapped column against the tables of the live databases")
    p.set_defaults(func=cmd_sources_validate)
    p = sources.add_parser("render", help="print a source's Debezium config")
    p.add_argument("source")
    p.add_argument("--format", choices=["connect", "properties"], default="connect")
    p.set_defaults(func=cmd_sources_render)
    p = sources.add_parser("register", help="create or update every connector in Kafka Connect")
    p.add_argument("--connect-url", required=True, help="Kafka Connect REST URL, e.g. http://connect:8083")
    p.add_argument("--kafka-bootstrap", default="${env:KAFKA_BOOTSTRAP_SERVERS}",
                   help="bootstrap servers for MySQL schema history (default: Connect's own env)")
    p.set_defaults(func=cmd_sources_register)

    schemas = sub.add_parser("schemas", help="JSON Schemas of the canonical models").add_subparsers(
        dest="schemas_command", required=True
    )
    schemas.add_parser("export", help="write schemas/json/*.schema.json").set_defaults(func=cmd_schemas_export)
    schemas.add_parser("check", help="fail if the committed schemas drifted").set_defaults(func=cmd_schemas_check)


def _add_dlq_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    dlq = sub.add_parser("dlq", help="inspect and replay the dead-letter queue").add_subparsers(
        dest="dlq_command", required=True
    )
    for name, func, text in (("list", cmd_dlq_list, "dead letters, oldest first"),
                             ("replay", cmd_dlq_replay, "re-inject open or replayed originals through the same path")):  # fmt: skip
        p = dlq.add_parser(name, help=text)
        p.add_argument("--since", help="failed since, e.g. 30m, 2h, 1d, or an ISO-8601 time")
        p.add_argument("--reason", help="error class (e.g. mapped_column_missing) or text in the reason")
        p.add_argument("--source", help="source name (connector file)")
        if name == "list":
            p.add_argument("--json", action="store_true")
            p.add_argument("--state", action="append", choices=["open", "replayed", "resolved", "discarded"],
                           help="only these states (repeatable; default: all)")
        else:
            p.add_argument("ids", nargs="*", help="dead letter ids (prefixes) to replay; default: all matching")
            p.add_argument("--dry-run", action="store_true")
        p.set_defaults(func=func)
    p = dlq.add_parser("show", help="one dead letter, whole")
    p.add_argument("id", help="dead letter id (or a unique prefix)")
    p.set_defaults(func=cmd_dlq_show)


def _add_bench_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="measure a stage beside its ceiling (see README)")
    p.add_argument("what", choices=["all", *RUNNERS], help="what to measure (all: every one but profile)")
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer runs: checks the harness, not figures")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per measurement per line on stdout, nothing else there (see README)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("soak", help="steady mixed traffic through a scratch stack, memory sampled (see README)")
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--rate", type=int, default=300, help="changes per second")
    p.set_defaults(func=cmd_soak)


def build_parser() -> argparse.ArgumentParser:
    from dataflows.bench.chaos import add_chaos_parser
    from dataflows.demo import add_demo_parser
    from dataflows.stewardship import add_identity_parser

    parser = argparse.ArgumentParser(prog="tidemark", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_stack_commands(sub)
    _add_sources_commands(sub)
    _add_dlq_commands(sub)
    _add_bench_commands(sub)
    add_demo_parser(sub)
    add_chaos_parser(sub)
    add_identity_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        return int(args.func(args))
    except ConnectorConfigError as e:
        print(f"invalid connector configuration:\n{e}", file=sys.stderr)
        return 2
    except KafkaConfigError as e:  # a property librdkafka refused (TIDEMARK_KAFKA_PROPERTIES)
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
