"""The shape of the imports: the library runs without the harness and without any extra's
package; it never imports the harness; and no two modules of either package import each other,
however indirectly (at module level or inside a function)."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from _isolation import NOT_LIBRARY, ROOT, run_without

SRC = ROOT / "src"
PACKAGES = ("sgmcmc", "sgmcmc_paper")
#: ``python -m sgmcmc`` is the ``sgmcmc`` command, which the harness provides: the one place the
#: library names the harness, an entry point that nothing imports.
HARNESS_ENTRY_POINT = SRC / "sgmcmc" / "__main__.py"

LIBRARY_ALONE = """
import importlib
import json
import pkgutil

import torch
from torch import nn

import sgmcmc
from sgmcmc import KFAC, KSGLD, PSGLD, SGLD, potential
from sgmcmc.diagnostics import mess, univariate_ess

# every module of the library imports (but the `python -m sgmcmc` entry point, which runs the CLI)
for info in pkgutil.walk_packages(sgmcmc.__path__, "sgmcmc."):
    if info.name != "sgmcmc.__main__":
        importlib.import_module(info.name)

x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(1))
chains = {}
for name in ("SGLD", "PSGLD", "KSGLD"):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    )
    start = [p.detach().clone() for p in model.parameters()]
    generator = torch.Generator().manual_seed(2)
    kfac = KFAC(model, damping=1.0) if name == "KSGLD" else None
    if name == "SGLD":
        sampler = SGLD(model.parameters(), lr=1e-4, generator=generator)
    elif name == "PSGLD":
        sampler = PSGLD(model.parameters(), lr=1e-4, generator=generator)
    else:
        sampler = KSGLD(model.parameters(), lr=1e-4, kfac=kfac, num_data=320, generator=generator)
    trace = []
    for _ in range(10):
        sampler.zero_grad()
        output = model(x)
        if kfac is not None:
            kfac.observe(output)
        loss = nn.functional.cross_entropy(output, y)
        potential(loss, num_data=320, params=model.parameters(), prior_std=1.0).backward()
        sampler.step()
        trace.append(torch.cat([p.detach().flatten()[:4] for p in model.parameters()]))
    moved = all(not torch.equal(a, p) for a, p in zip(start, model.parameters()))
    finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    chains[name] = {"moved": moved, "finite": finite}
    samples = torch.stack(trace).double().numpy()  # 10 draws of 15 coordinates
    ess = univariate_ess(samples, max_lag=5)
    chains[name]["ess"] = ess.shape == samples.shape[1:] and mess(samples, max_lag=5) is not None

refused = sorted({m.partition(".")[0] for m in NOT_INSTALLED.refused})
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in NOT_INSTALLED.names)
print(json.dumps({"chains": chains, "loaded": loaded, "refused": refused}))
"""


def test_the_library_runs_without_the_harness_or_any_extra():
    """``pip install sgmcmc`` (torch and numpy only) is enough: every library module imports and
    SGLD, pSGLD and KSGLD (with K-FAC) sample a conv + linear model with none of the extras'
    packages (nor the harness) importable, and none of them ends up in ``sys.modules``."""
    out = run_without(NOT_LIBRARY, LIBRARY_ALONE)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[-1])
    assert report["chains"] == {
        name: {"moved": True, "finite": True, "ess": True} for name in ("SGLD", "PSGLD", "KSGLD")
    }
    assert report["loaded"] == []


def _modules() -> dict[str, Path]:
    """Every module of both packages by dotted name (a package by its ``__init__``)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((SRC / package).rglob("*.py")):
            parts = path.relative_to(SRC).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imported_names(name: str, path: Path) -> set[str]:
    """Every dotted name a module imports, anywhere in it (in functions too): ``import a.b``
    gives ``a.b``, ``from a import b`` gives ``a.b`` (a module or a name in ``a``), relative
    imports resolved; ``import_module("...")`` with a literal counts as an import too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value)
    return names


def _import_graph() -> dict[str, set[str]]:
    """Module -> the modules of both packages it imports. Importing ``a.b.c`` runs the
    ``__init__`` of ``a`` and ``a.b`` first, so a module outside a package that imports from it
    depends on the package's ``__init__`` too (a module inside it does not: the package is
    already being imported)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in _imported_names(name, path):
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if not target:
                continue
            edges.add(target)
            parts = target.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if not (name == parent or name.startswith(parent + ".")):
                    edges.add(parent)
        edges.discard(name)
        graph[name] = edges
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_library_never_imports_the_harness():
    offenders = {
        f"{path.relative_to(ROOT)}: {target}"
        for name, path in _modules().items()
        if name.split(".")[0] == "sgmcmc" and path != HARNESS_ENTRY_POINT
        for target in _imported_names(name, path)
        if target.split(".")[0] == "sgmcmc_paper"
    }
    assert not offenders, f"the library imports the harness: {sorted(offenders)}"


def test_no_import_cycles():
    cycles = _cycles(_import_graph())
    assert not cycles, f"modules that import each other (directly or not): {cycles}"


def test_the_import_walk_sees_what_it_must():
    """The walk finds function-level and relative imports, and a cycle when there is one."""
    graph = _import_graph()
    assert "sgmcmc_paper.protocol.profiles" in graph["sgmcmc_paper.commands.run"]  # in a function
    assert "sgmcmc_paper.protocol" in graph["sgmcmc_paper.analysis.tables"]  # a package's init
    assert "sgmcmc_paper.cli" in graph["sgmcmc.__main__"]  # import_module("...") literal
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
