"""The shape of the tree: the kernel stays a kernel, and no module grows past 600 lines.

``tessera/`` is what every process shares (config, wire stubs, ring, membership, auth, paths,
chunking, server bootstrap, errors); it must not reach up into the SDK, the sync daemon, the CLI
or the local cluster launcher. Node processes must not import them either.
"""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("tessera/pb/",)
MAX_LINES = 600

# Top-level packages of tools and clients: above the kernel and the nodes.
TOOLING = {"client", "syncd", "cli", "devcluster", "loadtest", "bench", "tests"}
NODES = {"blocknode", "metanode", "syncnode"}

# Modules still over MAX_LINES, each held at its current size until it is split (tests only).
OVER_LIMIT = {
    "tests/k8s/test_manifests.py": 1259,
    "tests/model/test_meta_model.py": 680,
}


def _python_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(p for p in out if not p.startswith(GENERATED) and (ROOT / p).exists())


def _imported_packages(path: Path) -> set[str]:
    """Top-level package names a module imports, anywhere in it (also inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _violations(prefixes: tuple[str, ...], forbidden: set[str]) -> list[str]:
    found = []
    for rel in _python_files():
        if rel.startswith(prefixes):
            bad = _imported_packages(ROOT / rel) & forbidden
            if bad:
                found.append(f"{rel} imports {', '.join(sorted(bad))}")
    return found


def test_kernel_imports_no_client_daemon_cli_launcher_or_node() -> None:
    assert _violations(("tessera/",), TOOLING | NODES) == []


def test_nodes_import_no_client_daemon_cli_or_launcher() -> None:
    assert _violations(("blocknode/", "metanode/", "syncnode/"), TOOLING) == []


def test_the_checks_see_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from devcluster.procs import Proc\n    import syncd.daemon\n")
    assert _imported_packages(module) == {"devcluster", "syncd"}


def _private_imports(path: Path) -> list[str]:
    """What a module imports from the SDK's private modules or from the wire stubs: the names
    of ``client._x`` modules, ``tessera.pb`` modules, and underscored names from ``client``."""
    bad: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            mods = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            mods = [node.module]
            if node.module == "client":
                bad += [f"client.{a.name}" for a in node.names if a.name.startswith("_")]
            if node.module == "tessera":
                bad += [f"tessera.{a.name}" for a in node.names if a.name == "pb"]
        else:
            continue
        for mod in mods:
            parts = mod.split(".")
            if parts[0] == "client" and any(p.startswith("_") for p in parts[1:]):
                bad.append(mod)
            elif parts[:2] == ["tessera", "pb"]:
                bad.append(mod)
    return bad


def _private_attributes(path: Path) -> list[str]:
    """``client._anything`` / ``self.client._anything``: the SDK's private attributes used."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ):
            base = node.value
            name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", "")
            if name in ("client", "c", "sdk"):
                bad.append(f"{name}.{node.attr} (line {node.lineno})")
    return bad


def test_syncd_uses_only_the_public_sdk() -> None:
    """The sync daemon is an SDK user like any other: no private SDK modules or attributes, no
    raw protobuf."""
    found = {}
    for rel in _python_files():
        if rel.startswith("syncd/"):
            bad = _private_imports(ROOT / rel) + _private_attributes(ROOT / rel)
            if bad:
                found[rel] = bad
    assert found == {}


def test_the_public_api_check_sees_private_use(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "from client._client import _call\nimport tessera.pb.meta_pb2\n"
        "from tessera.pb import sync_pb2\nfrom client import _x\n"
        "async def f(self):\n    await self.client._block_pool()\n"
    )
    assert _private_imports(module) == [
        "client._client",
        "tessera.pb.meta_pb2",
        "tessera.pb",
        "client._x",
    ]
    assert _private_attributes(module) == ["client._block_pool (line 6)"]


def test_no_module_passes_600_lines() -> None:
    too_long = {}
    for rel in _python_files():
        lines = len((ROOT / rel).read_text().splitlines())
        if lines > OVER_LIMIT.get(rel, MAX_LINES):
            too_long[rel] = lines
    assert too_long == {}, f"split these modules (at most {MAX_LINES} lines): {too_long}"


@pytest.mark.parametrize("rel", sorted(OVER_LIMIT))
def test_exemptions_are_still_needed(rel: str) -> None:
    """An exempt file that was split (or removed) leaves the list."""
    path = ROOT / rel
    assert path.exists() and len(path.read_text().splitlines()) > MAX_LINES, rel
