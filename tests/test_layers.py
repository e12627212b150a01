"""The import rules of ARCHITECTURE.md, checked on the source tree:

* `core` imports no domain package (nor the wiring modules that mount them);
* a repository never imports a service;
* a domain never imports another domain's repository;
* no two domain packages import each other at module level (a cross-domain
  workflow is an event consumer or one orchestration module instead).

A domain is any package directly under `sendstream` except `core`, `models`
and `migrations`. The checker is tested on synthetic trees too, so a rule that
silently stopped matching would show.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SOURCE_ROOT = Path(__file__).resolve().parent.parent / "src"
PACKAGE = "sendstream"
NOT_DOMAINS = frozenset({"core", "models", "migrations"})
# Top-level modules that import every domain to mount or register them.
WIRING_MODULES = frozenset({"api", "app", "cli", "runner", "tasks"})


@dataclass(frozen=True)
class Import:
    target: str
    line: int
    module_level: bool


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    imports: tuple[Import, ...]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    # In a package's __init__, "." is the package itself.
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop] if drop else base
    return ".".join([*base, node.module] if node.module else base)


class _ImportCollector(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.is_package = is_package
        self.depth = 0
        self.found: list[Import] = []

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function
    visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self.found.append(Import(alias.name, node.lineno, self.depth == 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _resolve(self.module, self.is_package, node)
        self.found.append(Import(base, node.lineno, self.depth == 0))
        # `from pkg import name` may import the submodule `pkg.name`.
        for alias in node.names:
            if alias.name != "*":
                self.found.append(Import(f"{base}.{alias.name}", node.lineno, self.depth == 0))


def collect(root: Path, package: str = PACKAGE) -> list[Module]:
    modules = []
    for path in sorted((root / package).rglob("*.py")):
        name = _module_name(path, root)
        collector = _ImportCollector(name, path.name == "__init__.py")
        collector.visit(ast.parse(path.read_text(), filename=str(path)))
        modules.append(Module(name, path, tuple(collector.found)))
    return modules


def _domain_of(module: str, domains: frozenset[str], package: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == package and parts[1] in domains:
        return parts[1]
    return None


def _is_role(module: str, role: str) -> bool:
    # `x.service`, or anything inside a `x.service` package.
    return role in module.split(".")[2:]


def check_layers(root: Path, package: str = PACKAGE) -> list[str]:
    """Every broken rule as `path:line: rule: importer -> imported`."""
    pkg_dir = root / package
    domains = frozenset(
        p.name
        for p in pkg_dir.iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name not in NOT_DOMAINS
    )
    modules = collect(root, package)
    known = {m.name for m in modules}
    problems: list[str] = []
    # domain -> other domain -> first (path, line, importer, imported) seen
    edges: dict[str, dict[str, tuple[Path, int, str, str]]] = {}

    reported: set[tuple[Path, int, str]] = set()

    def report(module: Module, imp: Import, rule: str) -> None:
        # `from a.b import c` yields a.b and a.b.c: name the most specific once.
        if (module.path, imp.line, rule) in reported:
            return
        reported.add((module.path, imp.line, rule))
        where = module.path.relative_to(root)
        problems.append(f"{where}:{imp.line}: {rule}: {module.name} imports {imp.target}")

    for module in modules:
        own_domain = _domain_of(module.name, domains, package)
        in_core = module.name.split(".")[1:2] == ["core"]
        for imp in sorted(module.imports, key=lambda i: (i.line, -len(i.target))):
            if imp.target not in known:
                continue  # third-party, or a name (not a module) imported from one
            target_domain = _domain_of(imp.target, domains, package)
            top = imp.target.split(".")[1:2]
            if in_core and (target_domain or (top and top[0] in WIRING_MODULES)):
                report(module, imp, "core imports a domain")
            if _is_role(module.name, "repository") and _is_role(imp.target, "service"):
                report(module, imp, "a repository imports a service")
            if target_domain and target_domain != own_domain and _is_role(imp.target, "repository"):
                report(module, imp, "a domain imports another domain's repository")
            if own_domain and target_domain and target_domain != own_domain and imp.module_level:
                edges.setdefault(own_domain, {}).setdefault(
                    target_domain, (module.path, imp.line, module.name, imp.target)
                )
    for first, targets in sorted(edges.items()):
        for second, (path, line, importer, imported) in sorted(targets.items()):
            if first < second and first in edges.get(second, {}):
                back_path, back_line, back_importer, back_imported = edges[second][first]
                problems.append(
                    f"{path.relative_to(root)}:{line}: domains import each other: "
                    f"{importer} imports {imported}, and "
                    f"{back_path.relative_to(root)}:{back_line}: "
                    f"{back_importer} imports {back_imported}"
                )
    return problems


def test_source_tree_keeps_the_layer_rules() -> None:
    problems = check_layers(SOURCE_ROOT)
    assert not problems, "layer rules broken:\n" + "\n".join(problems)


def test_the_checker_sees_the_real_domains() -> None:
    # Guards against a checker that passes because it looks at nothing.
    modules = {m.name for m in collect(SOURCE_ROOT)}
    assert {"sendstream.core.outbox", "sendstream.workspaces.auth"} <= modules


# --- the checker itself, on synthetic trees


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for relative, source in {"sendstream/__init__.py": "", **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(root).parents:
            init = root / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("")
        path.write_text(source)
    return root


class TestLayerChecker:
    def test_a_clean_tree_passes(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {
                "sendstream/core/db.py": "import sqlalchemy\nfrom sendstream.models import x\n",
                "sendstream/models/x.py": "",
                "sendstream/contacts/repository.py": "from sendstream.models import x\n",
                "sendstream/contacts/service.py": "from . import repository\n",
                "sendstream/delivery/service.py": "from sendstream.contacts import service\n",
            },
        )
        assert check_layers(root) == []

    def test_core_importing_a_domain_fails_naming_file_and_import(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {
                "sendstream/core/jobs.py": (
                    "\n\ndef f():\n    from sendstream.contacts import service\n"
                ),
                "sendstream/contacts/service.py": "",
            },
        )
        problems = check_layers(root)
        assert problems
        assert problems[0].startswith("sendstream/core/jobs.py:4: core imports a domain")
        assert "sendstream.contacts.service" in problems[0]

    def test_core_importing_the_wiring_modules_fails(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {"sendstream/core/x.py": "import sendstream.api\n", "sendstream/api.py": ""},
        )
        assert ["core imports a domain" in p for p in check_layers(root)] == [True]

    def test_a_repository_importing_a_service_fails(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {
                "sendstream/contacts/repository.py": "from .service import contact_service\n",
                "sendstream/contacts/service.py": "",
            },
        )
        [problem] = check_layers(root)
        assert problem.startswith(
            "sendstream/contacts/repository.py:1: a repository imports a service"
        )

    def test_importing_another_domains_repository_fails(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {
                "sendstream/delivery/service.py": (
                    "from sendstream.contacts import repository as contacts_repo\n"
                ),
                "sendstream/contacts/repository.py": "",
            },
        )
        [problem] = check_layers(root)
        assert "a domain imports another domain's repository" in problem
        assert "sendstream/delivery/service.py:1" in problem

    def test_domains_importing_each_other_at_module_level_fail(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {
                "sendstream/incidents/flows.py": "from sendstream.cases import flows\n",
                "sendstream/cases/flows.py": "import sendstream.incidents.flows\n",
            },
        )
        [problem] = check_layers(root)
        assert "domains import each other" in problem
        assert "sendstream/cases/flows.py:1" in problem
        assert "sendstream/incidents/flows.py:1" in problem

    def test_a_function_level_import_back_is_not_a_module_level_cycle(self, tmp_path: Path) -> None:
        root = write_tree(
            tmp_path,
            {
                "sendstream/incidents/flows.py": "from sendstream.cases import flows\n",
                "sendstream/cases/flows.py": "def f():\n    import sendstream.incidents.flows\n",
            },
        )
        assert check_layers(root) == []


@pytest.mark.parametrize(
    ("module", "is_package", "source", "expected"),
    [
        ("sendstream.contacts.service", False, "from . import repository", "sendstream.contacts"),
        ("sendstream.contacts.service", False, "from .. import core", "sendstream"),
        ("sendstream.contacts", True, "from .service import x", "sendstream.contacts.service"),
    ],
)
def test_relative_imports_resolve_against_the_importing_module(
    module: str, is_package: bool, source: str, expected: str
) -> None:
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.ImportFrom)
    assert _resolve(module, is_package, node) == expected
