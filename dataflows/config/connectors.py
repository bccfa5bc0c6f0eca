"""connectors/*.yaml: one file per CDC source, validated, and rendered for Debezium.

The `debezium:` block is handed to Debezium unchanged (after secret references are resolved, for the
embedded engine), so a data team can use any Debezium property without a code change here.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from dataflows.config.secrets import SecretError, is_reference_only, is_secret_key, resolve
from dataflows.config.yaml_lines import LoadedYaml, YamlError, load_yaml
from dataflows.dialects import BY_CONNECTOR_CLASS
from dataflows.dialects.base import Dialect
from dataflows.ingest.expressions import ExpressionError, compile_expression
from schemas.v1.entities import ENTITY_MODELS, FIELD_ENTITY

# Properties the runtime owns: the embedded engine and Kafka Connect each set them their own way.
RUNTIME_PROPERTIES = frozenset(
    {"name", "offset.storage", "offset.storage.file.filename", "schema.history.internal",
     "schema.history.internal.file.filename", "key.converter", "value.converter"}
)  # fmt: skip
REQUIRED_PROPERTIES = ("connector.class", "topic.prefix", "database.hostname", "database.user", "database.password")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CustomerLink(_Strict):
    """How a row finds its customer: a column of its own, or a column of another captured table."""

    column: str = Field(description="Column holding the customer's id (with `via`: the key of the `via` row).")
    system: str | None = Field(
        None, description="Business system whose customer id the column holds (default: this source's system)."
    )
    via: str | None = Field(
        None, description="Captured table (schema.table) of this source whose row, keyed by `column`, names the "
        "customer through its own customer link."
    )


class TableMapping(_Strict):
    """One captured table: which canonical entity it feeds and how its columns map."""

    entity: Literal["customer", "contact", "billing_account", "subscription", "opportunity", "invoice"]
    key: list[str] = Field(min_length=1, description="Primary-key columns.")
    customer: CustomerLink
    fields: dict[str, str] = Field(
        default_factory=dict, description="Canonical field -> SQL expression in the source's dialect."
    )
    echo_column: str | None = Field(
        None, description="Column only Tidemark's write-back changes: a change of it is Tidemark's own echo."
    )


class ConnectorConfig(_Strict):
    """The contents of one connectors/<name>.yaml file."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Source name; never rename after first run.")
    system: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="Business system this source belongs to.")
    description: str = ""
    partitions: int | None = Field(None, ge=1, description="Partitions of the capture topics (default: settings).")
    debezium: dict[str, str | int | bool | float] = Field(description="Debezium connector properties.")
    tables: dict[str, TableMapping] = Field(default_factory=dict)
    owns: list[str] = Field(default_factory=list, description="Canonical fields this source is authoritative for.")

    @cached_property
    def dialect(self) -> Dialect:
        """The source's dialect, chosen once by its Debezium connector class."""
        return BY_CONNECTOR_CLASS[str(self.debezium["connector.class"])]

    @property
    def topic_prefix(self) -> str:
        return str(self.debezium["topic.prefix"])

    def topic_for(self, table: str) -> str:
        return f"{self.topic_prefix}.{table}"

    @property
    def heartbeat_topic(self) -> str | None:
        """Debezium's heartbeat topic for this source, when heartbeats are on."""
        if int(str(self.debezium.get("heartbeat.interval.ms", 0))) <= 0:
            return None
        return f"{self.debezium.get('topic.heartbeat.prefix', '__debezium-heartbeat')}.{self.topic_prefix}"

    def table_topics(self) -> dict[str, str]:
        return {table: self.topic_for(table) for table in self.tables}


@dataclass(frozen=True)
class ConfigProblem:
    """One problem in one file, printed as `file:line: key.path: message[; fix: how to fix it]`."""

    file: Path
    line: int
    key: str
    message: str
    fix: str = ""

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: {self.key or '<file>'}: {self.message}"
        return f"{text}; fix: {self.fix}" if self.fix else text


def sort_problems(problems: list[ConfigProblem]) -> list[ConfigProblem]:
    """File by file, top to bottom: the order a reader fixes them in."""
    return sorted(problems, key=lambda p: (str(p.file), p.line, p.key))


@dataclass(frozen=True)
class LoadedConnector:
    """A valid connector file with the line of every key, for checks that span files or need a database."""

    path: Path
    config: ConnectorConfig
    yaml: LoadedYaml

    def problem(self, loc: tuple[str | int, ...], message: str, fix: str = "") -> ConfigProblem:
        """A problem at `loc` (or its nearest ancestor present in the file)."""
        return ConfigProblem(self.path, self.yaml.line_of(loc), _dotted(loc), message, fix)


class ConnectorConfigError(ValueError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _dotted(loc: tuple[str | int, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _suggest(model: type[BaseModel] | None, key: str) -> str:
    if model is None:
        return ""
    close = difflib.get_close_matches(key, list(model.model_fields), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at `loc` (for spelling suggestions)."""
    if len(loc) == 1:
        return ConnectorConfig
    if len(loc) == 3 and loc[0] == "tables":
        return TableMapping
    if len(loc) == 4 and loc[0] == "tables" and loc[2] == "customer":
        return CustomerLink
    return None


def _debezium_problems(path: Path, loaded: LoadedYaml) -> list[ConfigProblem]:
    """Checks of the Debezium block that pydantic cannot express, each pointing at its property."""
    props = loaded.data.get("debezium")
    if not isinstance(props, dict):
        return []  # pydantic reports a missing or mistyped block

    def problem(key: str, message: str) -> ConfigProblem:
        loc = ("debezium", key) if key in props else ("debezium",)
        return ConfigProblem(path, loaded.line_of(loc), f"debezium.{key}", message)

    problems = [problem(k, "required Debezium property is missing") for k in REQUIRED_PROPERTIES if k not in props]
    connector = props.get("connector.class")
    if connector is not None and (not isinstance(connector, str) or connector not in BY_CONNECTOR_CLASS):
        known = ", ".join(sorted(BY_CONNECTOR_CLASS))
        problems.append(problem("connector.class", f"unsupported connector {connector!r}; use one of: {known}"))
    problems += [problem(k, "set by the Tidemark runtime: remove it from the file") for k in sorted(RUNTIME_PROPERTIES & props.keys())]
    for key, value in props.items():
        if is_secret_key(str(key)) and not is_reference_only(str(value)):
            problems.append(problem(str(key), "literal secret: write a reference, ${env:NAME} or ${file:PATH:KEY}"))
    return problems


def _field_suggestion(field: str) -> str:
    close = difflib.get_close_matches(field, list(FIELD_ENTITY), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _mapping_problems(path: Path, loaded: LoadedYaml, config: ConnectorConfig) -> list[ConfigProblem]:
    """Canonical field names, entity membership and SQL expressions of the table mappings."""
    problems = []

    def problem(loc: tuple[str | int, ...], message: str) -> None:
        problems.append(ConfigProblem(path, loaded.line_of(loc), _dotted(loc), message))

    dialect = BY_CONNECTOR_CLASS.get(str(config.debezium.get("connector.class")))  # None: reported already
    for table, mapping in config.tables.items():
        entity_fields = ENTITY_MODELS[mapping.entity].model_fields
        for field, sql in mapping.fields.items():
            loc = ("tables", table, "fields", field)
            if field not in FIELD_ENTITY:
                problem(loc, f"unknown canonical field {field!r}{_field_suggestion(field)}")
            elif field not in entity_fields:
                problem(loc, f"{field!r} belongs to entity {FIELD_ENTITY[field]!r}, not {mapping.entity!r}")
            elif dialect is not None:
                try:
                    compile_expression(sql, dialect.name)
                except ExpressionError as e:
                    problem(loc, str(e))
        via = mapping.customer.via
        if via is not None and (via not in config.tables or config.tables[via].customer.via is not None):
            problem(("tables", table, "customer", "via"),
                    f"{via!r} must be another mapped table of this source that links to the customer by a column")
    for i, field in enumerate(config.owns):
        if field not in FIELD_ENTITY:
            problem(("owns", i), f"unknown canonical field {field!r}{_field_suggestion(field)}")
    if config.debezium.get("decimal.handling.mode") != "string":
        problem(("debezium", "decimal.handling.mode") if "decimal.handling.mode" in config.debezium else ("debezium",),
                "set decimal.handling.mode: string (exact decimals; 'precise' sends bytes, 'double' loses cents)")
    return problems


def load_connector(path: Path) -> ConnectorConfig:
    """Load and validate one connector file; every problem is reported at once."""
    return load_connector_file(path).config


def load_connector_file(path: Path) -> LoadedConnector:
    """Like `load_connector`, keeping the file's key lines for the checks of dataflows.config.checks."""
    try:
        loaded = load_yaml(path)
    except YamlError as e:
        raise ConnectorConfigError([ConfigProblem(path, e.line, "", e.message)]) from None
    if not isinstance(loaded.data, dict):
        raise ConnectorConfigError([ConfigProblem(path, 1, "", "expected a mapping of keys at the top level")])
    problems = _debezium_problems(path, loaded)
    config = None
    try:
        config = ConnectorConfig.model_validate(loaded.data)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = f"unknown key{_suggest(_model_at(loc), str(loc[-1]))}"
            problems.append(ConfigProblem(path, loaded.line_of(loc), _dotted(loc), message))
    if config is not None:
        problems += _mapping_problems(path, loaded, config)
    if config is not None and config.name != path.stem:
        problems.append(ConfigProblem(
            path, loaded.line_of(("name",)), "name", f"must match the file name: rename to {path.stem!r} or the file"
        ))  # fmt: skip
    if problems or config is None:
        raise ConnectorConfigError(sorted(problems, key=lambda p: p.line))
    return LoadedConnector(path, config, loaded)


def connector_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.is_file())


def load_connectors(directory: Path) -> dict[str, ConnectorConfig]:
    """All connector files of a directory, by source name; problems of all files reported together."""
    configs: dict[str, ConnectorConfig] = {}
    problems: list[ConfigProblem] = []
    for path in connector_files(directory):
        try:
            config = load_connector(path)
        except ConnectorConfigError as e:
            problems.extend(e.problems)
            continue
        configs[config.name] = config
    if problems:
        raise ConnectorConfigError(problems)
    return configs


def capture_topics(connectors: Mapping[str, ConnectorConfig], default_partitions: int) -> dict[str, int]:
    """Every topic the captures write (tables, and heartbeats when on), with its partition count."""
    topics = {c.topic_for(t): c.partitions or default_partitions for c in connectors.values() for t in c.tables}
    topics.update({c.heartbeat_topic: 1 for c in connectors.values() if c.heartbeat_topic})
    return topics


def embedded_properties(
    config: ConnectorConfig, state_dir: Path, defaults: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Properties for the embedded engine: the file's block resolved, plus file-based offsets/history."""
    props: dict[str, str] = {}
    for key, value in config.debezium.items():
        try:
            props[key] = resolve(_text(value), defaults)
        except SecretError as e:
            msg = f"{config.name}: debezium.{key}: {e}"
            raise SecretError(msg) from None
    props.update({
        "name": config.name,
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(state_dir / "offsets.dat"),
        # Offsets are only ever written for batches the handler returned from (after Kafka acked them);
        # flushing them often keeps the replay after a crash short.
        "offset.flush.interval.ms": props.get("offset.flush.interval.ms", "1000"),
        "converter.schemas.enable": "false",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
    })  # fmt: skip
    props.update(config.dialect.embedded_properties(config.name, state_dir))
    return props


def connect_config(config: ConnectorConfig, bootstrap: str = "${env:KAFKA_BOOTSTRAP_SERVERS}") -> dict[str, str]:
    """Kafka Connect JSON for `PUT /connectors/{name}/config`; secret references stay references."""
    props = {key: _text(value) for key, value in config.debezium.items()}
    props.update({
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
    })  # fmt: skip
    props.update(config.dialect.connect_properties(config.name, bootstrap))
    return props


def _text(value: str | int | bool | float) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
