"""No import from a lower layer to a higher one: every package import checked against docs/architecture.md's Layers."""

import ast
import graphlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The spec, transcribed by hand from docs/architecture.md ("Layers"): what each layer and shared module may import
# besides itself. An entry names a layer or shared module, or one module of it ("data.collate").
ALLOWED = {
    "data": {"models", "checks"},
    "kernels": set(),
    "losses": {"data.collate", "kernels"},
    "methods": {"losses", "data.prompts", "data.collate", "models", "strategies", "io", "checks", "answers"},
    "eval": {"data", "losses", "models", "strategies", "io", "checks", "answers"},
    "robustness": {"data", "eval", "methods", "losses", "models", "io", "smollm2"},
    "cli": {"data", "methods", "robustness", "io", "checks", "strategies", "monitor", "validate"},
    "checks": set(),
    "io": set(),
    "strategies": set(),
    "smollm2": {"io"},
    "models": {"smollm2", "checks"},
    "hub": {"models"},
    "answers": {"data.prompts", "models", "strategies"},
    "tiny": {"data.synthetic"},
    "memory": {"io"},
    "monitor": {"io"},
    "validate": {"smollm2", "data.sources", "hub", "models"},
    "report": {"eval.plot", "eval.summary"},
}
# The suite's entry point: it runs the CLI, and refuses its model list as the CLI refuses a config.
ALLOWED["robustness.__main__"] = ALLOWED["robustness"] | {"robustness", "cli", "validate", "checks"}

# Where each file belongs; the more specific prefix wins (the suite's entry point sits above cli, which it imports).
UNITS = {
    "kernels": "kernels",
    "data": "data",
    "losses": "losses",
    "methods": "methods",
    "eval": "eval",
    "robustness": "robustness",
    "robustness.__main__": "robustness.__main__",
    "cli": "cli",
    "config": "cli",
    "__main__": "cli",
}


def module_name(path: Path) -> str:
    """The dotted name below `unlearn` (kernels/ installs as unlearn.kernels)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    parts = parts[1:] if parts[0] == "unlearn" else parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def unit(name: str) -> str:
    """The layer or shared module a dotted name below `unlearn` belongs to."""
    parts = name.split(".")
    for length in range(len(parts), 0, -1):
        if ".".join(parts[:length]) in UNITS:
            return UNITS[".".join(parts[:length])]
    return parts[0]


def allowed(source: str, target: str) -> bool:
    """Whether `source`'s unit may import `target` (a dotted name below `unlearn`)."""
    entries = ALLOWED.get(source, set())
    return unit(target) == source or any(target == e or target.startswith(e + ".") for e in entries)


FILES = sorted([*ROOT.joinpath("unlearn").rglob("*.py"), *ROOT.joinpath("kernels").rglob("*.py")])
MODULES = {module_name(path) for path in FILES}


def package_imports(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name below `unlearn`) of every package import in the file, in functions too."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.split(".")[0] == "unlearn"]
            continue
        if not isinstance(node, ast.ImportFrom):
            continue
        if node.level:
            parts = ["unlearn", *filter(None, package.split("."))]
            base = ".".join([*parts[: len(parts) + 1 - node.level], *filter(None, [node.module])])
        elif (node.module or "").split(".")[0] == "unlearn":
            base = node.module
        else:
            continue
        for alias in node.names:
            sub = f"{base}.{alias.name}".removeprefix("unlearn.")
            found.append((node.lineno, sub if sub in MODULES else base))
    return sorted({(line, target.removeprefix("unlearn").removeprefix(".")) for line, target in found})


IMPORTS = [(path, line, target) for path in FILES for line, target in package_imports(path)]


def test_every_file_and_allowed_entry_is_placed():
    """A new module needs a row in the table (and here), so it cannot dodge the rule by belonging nowhere."""
    assert {unit(module_name(path)) for path in FILES if module_name(path) != ""} <= ALLOWED.keys()
    assert all(unit(entry) in ALLOWED for entries in ALLOWED.values() for entry in entries)


def test_the_scan_sees_imports_inside_functions():
    """losses import the Triton kernels on first use only; the scan must still see that import."""
    assert any(target == "kernels" and path.match("losses/nll.py") for path, _, target in IMPORTS)


def test_no_import_goes_against_the_layers():
    violations = [
        f"{path.relative_to(ROOT)}:{line} -> unlearn.{target}"
        for path, line, target in IMPORTS
        if not allowed(unit(module_name(path)), target)
    ]
    assert not violations, "imports the Layers table does not allow:\n" + "\n".join(violations)


def test_no_import_cycle_between_layers():
    """Neither the table nor the code has a cycle between layers and shared modules."""
    spec = {source: {unit(entry) for entry in entries} for source, entries in ALLOWED.items()}
    graphlib.TopologicalSorter(spec).prepare()
    actual: dict[str, set[str]] = {}
    for path, _, target in IMPORTS:
        source = unit(module_name(path))
        if unit(target) != source:
            actual.setdefault(source, set()).add(unit(target))
    graphlib.TopologicalSorter(actual).prepare()
