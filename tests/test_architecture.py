"""The package's layering, read from the source: every import of every module under ``dwf/``
(module-level and function-local; ``if TYPE_CHECKING:`` blocks excepted) points to its own
layer or below, and no module imports itself through others. See docs/architecture.md."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import dwf
from dwf.version import DISTRIBUTION

ROOT = Path(dwf.__file__).parent

# The layer of each part of the package, bottom-up. The package root (dwf/__init__.py, the
# facade that names the verbs) and ``python -m dwf`` sit above everything.
LAYERS = {
    "dwf.errors": 0,
    "dwf.extras": 0,
    "dwf.version": 0,
    "dwf.format": 1,
    "dwf.io": 2,
    "dwf.tools": 3,
    "dwf.interfaces": 4,
    "dwf": 5,
    "dwf.__main__": 5,
}


def layer_of(module: str) -> int:
    best = ""
    for prefix in LAYERS:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    if not best:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS and the architecture doc")
    return LAYERS[best]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(path: Path) -> set[str]:
    """Every ``dwf`` module ``path`` imports, anywhere in it, except under TYPE_CHECKING."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "dwf")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            if mod.split(".")[0] == "dwf":
                for a in node.names:
                    # `from dwf.tools import diff` imports the submodule dwf.tools.diff
                    sub = f"{mod}.{a.name}"
                    found.add(sub if (ROOT.parent / (sub.replace(".", "/") + ".py")).exists()
                              or (ROOT.parent / sub.replace(".", "/")).is_dir() else mod)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(me)
    return found


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def test_every_module_is_in_a_layer() -> None:
    for name in all_modules():
        layer_of(name)


def test_imports_point_down() -> None:
    bad = []
    for name, path in all_modules().items():
        mine = layer_of(name)
        for target in imports_of(path):
            if layer_of(target) > mine:
                bad.append(f"{name} (layer {mine}) imports {target} (layer {layer_of(target)})")
    assert not bad, "imports that point up:\n" + "\n".join(bad)


def test_no_import_cycles() -> None:
    mods = all_modules()
    # Explicit imports only: a package's __init__ may import its own submodules (Python runs
    # the __init__ first, and a submodule that imports a sibling gets it from sys.modules); a
    # submodule importing names from its package's __init__ is an explicit edge and counted.
    graph = {name: {t for t in imports_of(p) if t in mods} for name, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append([*stack[stack.index(m) :], m])
            elif m not in state:
                walk(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            walk(n)
    assert not cycles, "import cycles:\n" + "\n".join(" → ".join(c) for c in cycles)


def test_the_checker_sees_function_local_imports(tmp_path: Path) -> None:
    # A test that cannot fail is a defect: the reader's old function-local import of a tool
    # must be found.
    src = ROOT / "io" / "_probe_for_test.py"
    src.write_text("def f():\n    from dwf.tools.check import check\n    return check\n")
    try:
        assert "dwf.tools.check" in imports_of(src)
        assert layer_of("dwf.tools.check") > layer_of(module_name(src))
    finally:
        src.unlink()


def _public_submodules() -> list[str]:
    return [
        m.name
        for m in pkgutil.walk_packages(dwf.__path__, "dwf.")
        if m.name != "dwf.__main__"  # importing it runs the command line
    ]


# Optional packages a dwf module may import at its top: only dwf.tools.torch_module, which
# dwf.to_torch imports when called. Without the package that module cannot be imported at all,
# so it cannot change an attribute either (a fresh clone without torch runs this test too).
OPTIONAL_AT_IMPORT = {"torch"}


def test_importing_a_submodule_never_changes_a_package_attribute() -> None:
    before = {name: getattr(dwf, name) for name in dwf.__all__}
    for sub in _public_submodules():
        try:
            importlib.import_module(sub)
        except ModuleNotFoundError as e:
            if (e.name or "").split(".")[0] not in OPTIONAL_AT_IMPORT:
                raise
    after = {name: getattr(dwf, name) for name in dwf.__all__}
    assert before == after
    # and no verb shares its name with a module at the top of the package
    top = {m.name for m in pkgutil.iter_modules(dwf.__path__)}
    assert not top & set(dwf.__all__), top & set(dwf.__all__)


@pytest.mark.parametrize("name", sorted(dwf.__all__))
def test_all_names_resolve_and_are_documented(name: str) -> None:
    obj = getattr(dwf, name)
    if (callable(obj) and not isinstance(obj, type)) or isinstance(obj, type):
        assert (obj.__doc__ or "").strip(), f"dwf.{name} has no docstring"


def test_dir_lists_the_public_names() -> None:
    assert set(dwf.__all__) <= set(dir(dwf))


def test_all_is_the_lazy_table() -> None:
    assert set(dwf.__all__) == {*dwf._LAZY, "__version__"}


def test_the_0_1_name_compare_still_works_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="dwf.diff"):
        assert dwf.compare is dwf.diff


def test_one_version_everywhere() -> None:
    import importlib.metadata

    assert importlib.metadata.version(DISTRIBUTION) == dwf.__version__


# -- the format layer is pure ---------------------------------------------------------------------
_FILE_CALLS = {"open", "stat", "fstat", "lstat", "read", "scandir", "listdir", "walk", "mmap"}


def test_the_format_layer_reads_no_file_but_the_known_table() -> None:
    """format/ turns text, dialects and bytes into records: opening, statting or reading files
    belongs to io/. The one exception is known.py, which reads the table of known networks
    shipped in dwf/data/."""
    found = []
    for path in sorted((ROOT / "format").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = getattr(fn, "id", None) or getattr(fn, "attr", "")
            if name in _FILE_CALLS and path.name != "known.py":
                found.append(f"{path.name}:{node.lineno} {name}()")
    assert not found, found


def test_layer_definitions_reach_other_layers_only_through_ref() -> None:
    """The planner reuses a layer's result wherever the same section meets the same input; that
    is only right for definitions that did not look at other layers, which :meth:`ref` records.
    Nothing but LayerInput itself may touch the list of built layers."""
    tree = ast.parse((ROOT / "format" / "layers.py").read_text(encoding="utf-8"))
    allowed = {"__init__", "ref"}
    offenders = []
    for cls in [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "LayerInput"]:
        for fn in cls.body:
            if isinstance(fn, ast.FunctionDef) and fn.name not in allowed:
                offenders += [
                    f"LayerInput.{fn.name}"
                    for n in ast.walk(fn)
                    if isinstance(n, ast.Attribute) and n.attr == "_built"
                ]
    for fn in [n for n in tree.body if isinstance(n, ast.FunctionDef)]:
        offenders += [
            fn.name for n in ast.walk(fn) if isinstance(n, ast.Attribute) and n.attr == "_built"
        ]
    assert not offenders, offenders


# -- long modules say why -------------------------------------------------------------------------
LONG = 650  # "~600 lines": a module past this says at its top why it is one module


def test_a_long_module_says_why_at_its_top() -> None:
    """Failed before: dwf/tools/export_reader.py (753 lines) did not."""
    silent = []
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > LONG:
            doc = ast.get_docstring(ast.parse(text)) or ""
            if "longer than" not in doc:
                silent.append(str(path.relative_to(ROOT)))
    assert silent == [], f"modules over {LONG} lines that do not say why: {silent}"


# -- docs/architecture.md names every module ------------------------------------------------------
DOC = ROOT.parent / "docs" / "architecture.md"
FOLDERS = ("interfaces", "tools", "io", "format")


def _picture() -> dict[str, str]:
    """The picture at the top of docs/architecture.md, cut into the text beside each folder of
    dwf/ (``""`` for the lines naming top-level modules)."""
    text = DOC.read_text(encoding="utf-8")
    block = text.split("```", 2)[1]
    parts: dict[str, str] = {}
    folder = ""
    for line in block.splitlines():
        named = [f for f in FOLDERS if f"dwf/{f}/" in line]
        if named:
            folder = named[0]
        elif re.search(r"dwf/\w+\.py", line):
            folder = ""
        parts[folder] = parts.get(folder, "") + line + "\n"
    return parts


def _where_table() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text[text.index("## Where does X live") : text.index("## One description")]


def _command_modules() -> set[str]:
    from dwf.interfaces.cli import COMMANDS

    return set(COMMANDS.values())


def test_the_architecture_picture_names_every_module() -> None:
    """Each module is named (``name.py``) in the picture beside its own folder (a command's
    module in cli/ is "one module per command"), and the picture names no module that does not
    exist (the doc once named onnx_export.py and format/graph.py after they were renamed)."""
    parts = _picture()
    missing = []
    for path in all_modules().values():
        rel = path.relative_to(ROOT.parent).as_posix()
        sub = path.relative_to(ROOT).parts
        if len(sub) == 1:  # dwf/errors.py, dwf/__init__.py …
            if rel not in parts.get("", ""):
                missing.append(rel)
        elif path.name == "__init__.py" and len(sub) == 2:
            continue  # the folder itself
        elif sub[:2] == ("interfaces", "cli"):
            if path.stem not in _command_modules() | {"__init__"} and (
                f"{path.stem}.py" not in parts["interfaces"]
            ):
                missing.append(rel)
        elif not re.search(rf"(?<![/\w]){re.escape(path.name)}", parts[sub[0]]):
            missing.append(rel)
    assert not missing, f"modules the picture in docs/architecture.md does not name: {missing}"
    gone = []
    for folder, text in parts.items():
        for word in re.findall(r"(?<![/\w])(\w+)\.py\b", text):
            here = [ROOT / folder / f"{word}.py", ROOT / folder / "cli" / f"{word}.py"]
            if folder and not any(p.exists() for p in here):
                gone.append(f"{folder}/{word}.py")
    assert not gone, f"the picture names modules that do not exist: {gone}"


def test_the_where_table_names_every_module_and_only_real_ones() -> None:
    """Every module (but a command's own module in cli/ and the packages' __init__) has a row
    of "Where does X live" naming its path, and every module the doc names exists."""
    table = _where_table()
    missing = [
        rel
        for rel in (p.relative_to(ROOT.parent).as_posix() for p in all_modules().values())
        if rel not in table
        and not rel.endswith("/__init__.py")
        and not (rel.startswith("dwf/interfaces/cli/") and Path(rel).stem in _command_modules())
    ]
    assert not missing, f"modules no row of 'Where does X live' names: {missing}"
    text = DOC.read_text(encoding="utf-8")
    gone = {p for p in re.findall(r"dwf/[\w/]+\.py", text) if not (ROOT.parent / p).exists()}
    files = {p.name for p in ROOT.parent.rglob("*.py")}
    gone |= {f for f in re.findall(r"(?<![/\w])\w+\.py\b", text) if f not in files}
    assert not gone, f"docs/architecture.md names modules that do not exist: {sorted(gone)}"
