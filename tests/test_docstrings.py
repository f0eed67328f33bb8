"""Every public function, class and method says why it exists in the first line of its docstring (parsed, not imported).

Checked, in every .py file under unlearn/ and kernels/: each module-level function and class whose name does not start
with "_", and each method of such a class whose name does not (so dunder methods are skipped). A method is exempt where
it overrides a method that one of its bases in this package documents (an `objective`, a source's `load`, an attack's
`run`): the base's line says why, and the override is its own version of that. Bases are resolved through the file's
own classes and its `from ... import` lines, re-exports followed; a base outside the package (Lightning, torch,
torchmetrics) exempts nothing, so Lightning hooks and autograd functions are documented where they are defined.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([*ROOT.joinpath("unlearn").rglob("*.py"), *ROOT.joinpath("kernels").rglob("*.py")])
SECTIONS = ("Args:", "Returns:", "Raises:", "Yields:", "Example:", "Examples:", "Note:")
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def module_name(path: Path) -> str:
    """The dotted import name of a file (kernels/ installs as unlearn.kernels)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    parts = ("unlearn", *parts) if parts[0] == "kernels" else parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


TREES = {module_name(path): (path, ast.parse(path.read_text())) for path in FILES}


def package_of(module: str) -> str:
    """The package that a relative import in `module` starts from."""
    path, _ = TREES[module]
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def class_named(module: str, name: str) -> tuple[str, ast.ClassDef] | None:
    """(module, class) that `name` refers to at the top of `module`: defined there or imported from the package."""
    for node in TREES[module][1].body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return module, node
        if isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                package = package_of(module).split(".")
                source = ".".join([*package[: len(package) - node.level + 1], *filter(None, [node.module])])
            for alias in node.names:
                if (alias.asname or alias.name) == name and source in TREES:
                    return class_named(source, alias.name)
    return None


def documented_on_a_base(module: str, cls: ast.ClassDef, method: str) -> bool:
    """Whether a base class of `cls` in the package, or a base of it, defines `method` with a docstring."""
    for base in cls.bases:
        found = class_named(module, base.id) if isinstance(base, ast.Name) else None
        if found is None:
            continue
        base_module, base_cls = found
        defined = [item for item in base_cls.body if isinstance(item, DEFINITIONS) and item.name == method]
        if any(ast.get_docstring(item) for item in defined) or documented_on_a_base(base_module, base_cls, method):
            return True
    return False


def problem(node: ast.AST) -> str | None:
    """What is wrong with a definition's docstring, or None: it must exist and open with its sentence."""
    docstring = ast.get_docstring(node, clean=False)
    if docstring is None:
        return "no docstring"
    first = docstring.split("\n", 1)[0].strip()
    if not first:
        return "the first line is empty"
    if first.startswith(SECTIONS):
        return f"the first line is a section header ({first!r}), not a sentence"
    return None


def test_every_public_definition_says_why_in_its_first_line():
    """Every public definition that is not an exempt override, all failures listed at once."""
    problems = []

    def check(module: str, node: ast.AST, name: str) -> None:
        found = problem(node)
        if found:
            problems.append(f"{TREES[module][0].relative_to(ROOT)}:{node.lineno} {name}: {found}")

    for module, (_, tree) in TREES.items():
        for node in tree.body:
            if isinstance(node, DEFINITIONS) and not node.name.startswith("_"):
                check(module, node, node.name)
            if not isinstance(node, ast.ClassDef) or node.name.startswith("_"):
                continue
            check(module, node, node.name)
            for item in node.body:
                public = isinstance(item, DEFINITIONS) and not item.name.startswith("_")
                if public and not documented_on_a_base(module, node, item.name):
                    check(module, item, f"{node.name}.{item.name}")
    assert not problems, f"{len(problems)} public definitions without a first-line docstring:\n" + "\n".join(problems)


def test_an_override_of_a_documented_base_method_is_exempt_and_others_are_not():
    """The exemption's resolution on the package itself: through a relative and an absolute import, and not past an
    external base."""
    npo = class_named("unlearn.methods", "NPO")
    assert npo is not None and npo[0] == "unlearn.methods.divergence", "re-exports must be followed"
    assert documented_on_a_base(*npo, "objective"), "UnlearnModule documents objective"
    assert documented_on_a_base(*class_named("unlearn.methods.rejection", "IDKAP"), "objective")
    assert not documented_on_a_base(*class_named("unlearn.methods.base", "UnlearnModule"), "training_step")
