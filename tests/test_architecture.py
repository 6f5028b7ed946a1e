"""The layering of specs/architecture.md, enforced: the floors are read from that document's
table, and every import in vhdkit/ (those inside functions too; not those only a type checker
runs) is held against them. Also: no import circles, no import of the package root from inside
it, format names spelled only in formats.py, and nothing in the repository pointing outside it."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "vhdkit"
DOCUMENT = ROOT / "specs" / "architecture.md"
SIBLING = -1  # floor "-" in the table: may import vhdkit.errors only
SIBLING_USERS = {"preflight"}  # checks hosts against netvirt models and vmbus sizing (specs/architecture.md)


def floors_from_document() -> dict[str, int]:
    """unit -> floor; a unit is a top-level module or package of vhdkit ("" is the root)."""
    text = DOCUMENT.read_text()
    table = text[text.index("## The floors") :].split("```")[1]
    floors: dict[str, int] = {}
    current: int | None = None
    for line in table.splitlines():
        row = re.match(r"^\s{1,4}(\d+|-)\s{2,}(.+?)(?:\s{2,}.*)?$", line)
        more = re.match(r"^\s{8}(\S.+?)(?:\s{2,}.*)?$", line)
        if row:
            current = SIBLING if row.group(1) == "-" else int(row.group(1))
            names = row.group(2)
        elif more and current is not None:
            names = more.group(1)
        else:
            continue
        for name in names.split(","):
            name = name.strip().removesuffix("/").removesuffix(".py")
            if name:
                floors["" if name == "vhdkit/__init__" else name] = current
    return floors


FLOORS = floors_from_document()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def unit_of(module: str) -> str:
    """vhdkit.vhdx.image -> "vhdx"; vhdkit -> ""; vhdkit.__main__ -> "__main__"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node, except what sits under ``if TYPE_CHECKING:`` (never run)."""
    out: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        out.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return out


def imports_of(module: str) -> set[str]:
    """The vhdkit modules ``module`` imports at run time ("vhdkit" for an attribute of the root)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "vhdkit")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "vhdkit":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)  # `from . import formats` is a module
    return found


GRAPH = {m: imports_of(m) for m in MODULES}


def test_the_document_names_every_unit_of_the_package():
    units = {unit_of(m) for m in MODULES} - {"__main__"}
    assert units - set(FLOORS) == set(), "specs/architecture.md gives these no floor"
    assert set(FLOORS) - units == set(), "specs/architecture.md names units that do not exist"


def test_nothing_inside_the_package_imports_its_root():
    offenders = sorted(m for m, targets in GRAPH.items() if "vhdkit" in targets and m not in ("vhdkit", "vhdkit.__main__"))
    assert offenders == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "vhdkit.__main__"))
def test_imports_run_down_the_floors(module):
    unit = unit_of(module)
    floor = FLOORS[unit]
    wrong = []
    for target in GRAPH[module]:
        target_unit = unit_of(target)
        if target_unit == unit:
            continue  # inside one package or module
        if floor == SIBLING:
            if target != "vhdkit.errors":
                wrong.append(f"{target} (a sibling package imports vhdkit.errors only)")
            continue
        target_floor = FLOORS[target_unit]
        if target_floor == SIBLING and unit in SIBLING_USERS:
            continue
        if target_floor == SIBLING or target_floor >= floor:
            wrong.append(f"{target} (floor {target_floor}, from floor {floor})")
        elif target_unit in ("vhd", "vhdx") and unit != "validation" and floor >= FLOORS["validation"]:
            wrong.append(f"{target} (only validation reads a format's internals; the rest go through vhdkit.formats)")
    assert wrong == [], f"{module} imports {wrong}"


def test_no_import_circles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH.get(node, ()):
            if target not in GRAPH:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    assert circles == []


def _string_constants(tree: ast.AST) -> list[tuple[int, str]]:
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def test_format_names_are_spelled_only_in_the_registry():
    found = []
    for module, path in MODULES.items():
        if module == "vhdkit.formats":
            continue
        for line, value in _string_constants(ast.parse(path.read_text())):
            if value in ("vhdx", "vhd"):
                found.append(f"{path.relative_to(ROOT)}:{line} {value!r}")
    assert found == []


def test_the_repository_points_nowhere_outside_itself():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    outside = re.compile(r"DESIGN\.md|\bnotes/[\w-]+\.md|\breference/[\w./-]+|\.\./shared|VHDKIT_SAMPLES_NOTES")
    hits = []
    for name in files:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".sh", ".toml", ".txt", ".c", ".json", "") or not path.is_file():
            continue
        if name == "tests/test_architecture.py":
            continue  # the pattern itself
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if outside.search(line):
                hits.append(f"{name}:{number}: {line.strip()[:100]}")
    assert hits == []
