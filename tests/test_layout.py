"""The package's layout: imports point one way (the course's machinery -> the lenses -> the
subject), with no circles, counting imports inside functions; and no facades (every name imported
from nanogpt comes from the module that defines it)."""

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "nanogpt"
# The one arrow from the subject to a lens: `train --diag` builds the diagnostics Monitor.
ALLOWED = {("nanogpt.train", "nanogpt.diagnostics.monitor")}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(tree: ast.AST) -> list[tuple[str, str | None]]:
    """(module, name) for every import of the project, at any depth: `from nanogpt.x import y`
    gives (nanogpt.x, y), or (nanogpt.x.y, None) when y is a module; `import nanogpt.x` (x, None)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "nanogpt":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.append((sub, None) if sub in MODULES else (node.module, alias.name))
        elif isinstance(node, ast.Import):
            found += [(a.name, None) for a in node.names if a.name.split(".")[0] == "nanogpt"]
    return found


def graph() -> dict[str, set[str]]:
    return {name: {m for m, _ in imports_of(ast.parse(path.read_text(encoding="utf-8")))
                   if m in MODULES and m != name and m != "nanogpt"}
            for name, path in MODULES.items()}


def role(module: str) -> str:
    if module.startswith("nanogpt.course") or module == "nanogpt.__main__":  # the entry point is on top
        return "course"
    if module.startswith(("nanogpt.diagnostics", "nanogpt.attribution")):
        return "lens"
    return "subject"


def test_no_import_circles_even_inside_functions():
    edges, state, circles = graph(), {}, []

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                circles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert not circles, " ; ".join(" -> ".join(c) for c in circles)


def test_arrows_point_from_the_course_to_the_lenses_to_the_subject():
    rank = {"subject": 0, "lens": 1, "course": 2}
    upward = [(a, b) for a, targets in graph().items() for b in targets
              if rank[role(b)] > rank[role(a)] and (a, b) not in ALLOWED]
    assert not upward


def test_the_models_and_the_data_import_nothing_of_the_engine():
    edges = graph()
    for model in ("nanogpt.micrograd", "nanogpt.bigram", "nanogpt.mlp", "nanogpt.gpt"):
        assert edges[model] <= {"nanogpt.errors"}, model
    assert edges["nanogpt.tokenizer"] <= {"nanogpt.errors"}
    assert edges["nanogpt.datasets"] <= {"nanogpt.cli", "nanogpt.errors"}  # cli: its own command line
    assert edges["nanogpt.data"] <= {"nanogpt.datasets", "nanogpt.errors", "nanogpt.tokenizer"}


def defined_names(path: Path) -> set[str]:
    """The names a module defines at its top level (imports do not count)."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                names |= {t.id for t in ast.walk(target) if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def sources():
    """Every piece of code that imports the package: its modules, tests, benchmarks, lectures."""
    code_files = [*PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]
    for path in sorted(code_files):
        yield path.relative_to(ROOT), path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "lectures").rglob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                code = "\n".join(line for line in "".join(cell["source"]).splitlines()
                                 if not line.lstrip().startswith(("%", "!")))
                yield f"{path.relative_to(ROOT)} cell {i}", code


DEFINED = {name: defined_names(path) for name, path in MODULES.items()}


def test_every_imported_name_comes_from_the_module_that_defines_it():
    facades = []
    for where, code in sources():
        try:
            tree = ast.parse(code)
        except SyntaxError:  # a learner's half-written cell
            continue
        facades += [f"{where}: {m}.{n}" for m, n in imports_of(tree)
                    if n is not None and m in DEFINED and n not in DEFINED[m]]
    assert not facades
