"""Secret references in connector files: `${env:NAME}` and `${file:PATH:KEY}`, never literal secrets.

The syntax is Kafka Connect's config-provider syntax, so the same reference works in the embedded engine
(resolved here) and in Kafka Connect (resolved by its EnvVarConfigProvider / FileConfigProvider).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

REFERENCE = re.compile(r"\$\{(env|file):([^}]*)\}")
SECRET_KEY = re.compile(r"(password|secret|token|credential|sasl\.jaas\.config|api[._-]?key)", re.IGNORECASE)


class SecretError(ValueError):
    """A reference that cannot be resolved; the message never contains a secret value."""


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(key))


def is_reference_only(value: str) -> bool:
    """True when the whole value is one reference (what a secret-bearing key must be)."""
    return bool(REFERENCE.fullmatch(value.strip()))


def _read_properties(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values


def resolve(value: str, defaults: Mapping[str, str] | None = None) -> str:
    """Replace every reference in `value`. Environment first, then the runtime's `defaults`."""

    def substitute(match: re.Match[str]) -> str:
        kind, body = match.group(1), match.group(2)
        if kind == "env":
            if body in os.environ:
                return os.environ[body]
            if defaults is not None and body in defaults:
                return defaults[body]
            msg = f"environment variable {body} is not set (referenced as ${{env:{body}}})"
            raise SecretError(msg)
        path_text, sep, key = body.rpartition(":")
        if not sep or not path_text:
            msg = f"file reference ${{file:{body}}} must be ${{file:PATH:KEY}}"
            raise SecretError(msg)
        path = Path(path_text)
        try:
            props = _read_properties(path)
        except OSError as e:
            msg = f"cannot read secrets file {path}: {e.strerror}"
            raise SecretError(msg) from None
        if key not in props:
            msg = f"key {key!r} not found in secrets file {path}"
            raise SecretError(msg)
        return props[key]

    return REFERENCE.sub(substitute, value)


def mask(key: str, value: str) -> str:
    """What may be shown of a property: references as written, literal secrets never."""
    if is_secret_key(key) and not is_reference_only(value):
        return "********"
    return value
