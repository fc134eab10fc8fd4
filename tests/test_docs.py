"""The documentation's examples run, and the reference pages cover the public API.

Every fenced code block of ``README.md`` and ``docs/*.md`` is taken in document order, one
namespace and one fresh working directory per file. That directory already holds the demo model
(``demo.cfg`` and ``demo.weights``, from :func:`dwf.tools.demo.write_demo`), so examples can say
``dwf.open("demo.weights")``.

Conventions a page can use:

* ```` ```python ```` blocks are executed. ```` ```python no-run ```` blocks are skipped: keep
  those for the few examples that need files the demo does not provide.
* Lines starting with ``#>`` in a python block are the output the block prints. When a block has
  any, its captured standard output must equal them (``#>`` and one space removed); a ``#> ...``
  line stands for any number of lines.
* ```` ```console ```` blocks are shell transcripts: every ``$ dwf …`` or ``$ python -m dwf …``
  line is run through :func:`dwf.interfaces.cli.main` and must print exactly the lines that
  follow it (standard output and standard error together; ``...`` stands for any number of
  lines).
  ``$ echo $?`` prints the previous command's exit code. A console block with any other command
  is shown, not checked. ```` ```sh ```` and other blocks are not run.
* ```` ```console needs=onnx ```` (or ``python``): the block needs an optional package; it is
  skipped where that package is missing — except in CI (``DWF_REQUIRE_SHARED`` set), which
  installs the extras and must run every block.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

import dwf
import dwf.interfaces.cli
from dwf.tools.demo import write_demo

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
OWN_PAGES = ("quickstart.md", "format.md", "api.md", "cli.md")  # the user documentation
_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@attrs.frozen
class Block:
    path: Path
    line: int  # 1-based line of the first line of code (after the opening fence)
    lang: str
    flags: frozenset[str]
    code: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks(path: Path) -> Iterator[Block]:
    """Every fenced block of a markdown file, in order (indented fences in lists included)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        words = m["info"].strip().split()
        start = i + 1
        j = start
        while j < len(lines):
            close = lines[j].strip()
            if close.startswith(fence[0] * len(fence)) and not close.strip(fence[0]):
                break
            j += 1
        else:
            raise AssertionError(f"{path}:{i + 1}: unclosed code fence")
        body = [
            ln[len(indent) :] if ln.startswith(indent) else ln.lstrip() for ln in lines[start:j]
        ]
        lang = words[0].lower() if words else ""
        yield Block(path, start + 1, lang, frozenset(words[1:]), "\n".join(body) + "\n")
        i = j + 1


def _matches(expected: list[str], actual: str) -> bool:
    """``actual`` equals the expected lines, where a line ``...`` stands for any lines."""
    pattern = "".join(
        r"(?:[^\n]*\n)*?" if line.strip() == "..." else re.escape(line.rstrip()) + r"[ \t]*\n"
        for line in expected
    )
    text = actual if actual.endswith("\n") or not actual else actual + "\n"
    return re.fullmatch(pattern, text) is not None


def _run_python(block: Block, namespace: dict[str, object]) -> None:
    # Pad with blank lines so tracebacks point at the markdown line.
    code = compile("\n" * (block.line - 1) + block.code, str(block.path), "exec")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(code, namespace)
    expected = [
        ln.strip()[3:] if ln.strip().startswith("#> ") else ""
        for ln in block.code.splitlines()
        if ln.strip() == "#>" or ln.strip().startswith("#> ")
    ]
    if expected and not _matches(expected, out.getvalue()):
        pytest.fail(
            f"{block.where}: the block printed\n{out.getvalue()}\nbut its #> lines say\n"
            + "\n".join(expected)
        )


def _dwf_args(command: str) -> list[str] | None:
    """The arguments of a ``dwf …`` or ``python -m dwf …`` command line, else ``None``."""
    argv = shlex.split(command)
    if argv[:1] == ["dwf"]:
        return argv[1:]
    if argv[:3] == ["python", "-m", "dwf"]:
        return argv[3:]
    return None


def _run_console(block: Block) -> None:
    steps: list[tuple[str, list[str]]] = []
    for line in block.code.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    if not steps or any(
        cmd != "echo $?" and _dwf_args(cmd) is None for cmd, _ in steps
    ):  # a transcript of other programs: shown, not checked
        return
    last = 0
    for command, expected in steps:
        if command == "echo $?":
            output = f"{last}\n"
        else:
            args = _dwf_args(command)
            assert args is not None
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
                try:
                    last = dwf.interfaces.cli.main(args)
                except SystemExit as e:  # argparse usage errors
                    last = e.code if isinstance(e.code, int) else 2
            output = buf.getvalue()
        while expected and not expected[-1].strip():
            expected.pop()
        if not _matches(expected, output):
            pytest.fail(
                f"{block.where}: '$ {command}' printed\n{output}\nbut the page says\n"
                + "\n".join(expected)
            )


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if page.name == "onnx.md":  # runs the exported models: needs dwf-darknet[onnx-test]
        pytest.importorskip("onnxruntime")
    if page.name == "pytorch.md":  # CI installs torch where the machine keeps its wheel
        pytest.importorskip("torch")
    write_demo(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "100")  # argparse output does not depend on the terminal
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for block in blocks(page):
        if _missing_extra(block):
            continue
        if block.lang in ("python", "py") and "no-run" not in block.flags:
            _run_python(block, namespace)
            ran += 1
        elif block.lang == "console" and "no-run" not in block.flags:
            _run_console(block)
            ran += 1
    if page.parent == DOCS and page.name in OWN_PAGES:
        assert ran, f"{page.name} has no example that runs"


def _missing_extra(block: Block) -> bool:
    """Whether the block names (``needs=MODULE``) an optional package that is not installed
    here; in CI a missing one is a failure, not a skip."""
    for flag in block.flags:
        if flag.startswith("needs="):
            module = flag.partition("=")[2]
            if importlib.util.find_spec(module) is None:
                if os.environ.get("DWF_REQUIRE_SHARED"):
                    pytest.fail(f"{block.where} needs {module!r}, which CI must install")
                return True
    return False


def _api_text() -> str:
    return (DOCS / "api.md").read_text(encoding="utf-8")


def _prose(path: Path) -> Iterator[str]:
    """The lines of a markdown file outside fenced code blocks."""
    fence = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        m = _FENCE.match(line)
        if m and (not fence or (m["fence"].startswith(fence) and not m["info"].strip())):
            fence = "" if fence else m["fence"]
            continue
        if not fence:
            yield line


def _headings(path: Path) -> list[str]:
    return [ln for ln in _prose(path) if ln.startswith("#")]


@pytest.mark.parametrize("name", dwf.__all__)
def test_public_name_has_a_heading_in_api_md(name: str) -> None:
    headings = _headings(DOCS / "api.md")
    assert any(f"`dwf.{name}`" in h for h in headings), f"docs/api.md has no heading for dwf.{name}"


def _members(obj: object) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def test_public_members_are_mentioned_in_api_md(tmp_path: Path) -> None:
    """Every public attribute or method of the classes users handle appears in docs/api.md,
    written as ``.name`` or `` `name` ``."""
    _, weights = write_demo(tmp_path)
    with dwf.open(weights) as f:
        owners: dict[str, set[str]] = {
            "WeightsFile": _members(f),
            "Layer": _members(f[0]),
        }
    for cls in (dwf.Plan, dwf.LayerPlan, dwf.ArraySpec, dwf.NetInput, dwf.Header, dwf.Dialect):
        owners[cls.__name__] = _members(cls)
    for name in dwf.__all__:
        error_cls = getattr(dwf, name)
        if isinstance(error_cls, type) and issubclass(error_cls, dwf.DwfError):
            owners[name] = set(vars(error_cls("x"))) | {"message"}  # attributes set in __init__
    # Fence lines (```text) and module-level names (dwf.save) do not count as mentions.
    text = "\n".join(ln for ln in _api_text().splitlines() if not ln.lstrip().startswith("```"))
    missing = [
        f"{owner}.{name}"
        for owner, names in owners.items()
        for name in sorted(names)
        if not re.search(rf"((?<!dwf)\.{re.escape(name)}\b|`{re.escape(name)}\b)", text)
    ]
    assert not missing, f"docs/api.md does not mention: {', '.join(missing)}"


def _subcommands() -> dict[str, list[str]]:
    parser = dwf.interfaces.cli.build_parser()
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            return {
                name: [
                    opt
                    for a in sub._actions
                    for opt in a.option_strings
                    if opt.startswith("--") and opt != "--help"
                ]
                for name, sub in choices.items()
            }
    raise AssertionError("dwf.interfaces.cli.build_parser() has no subcommands")


def test_every_subcommand_and_option_is_in_cli_md() -> None:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    subs = _subcommands()
    assert subs
    for name, options in subs.items():
        assert f"dwf {name}" in text, f"docs/cli.md does not document 'dwf {name}'"
        for opt in options:
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), (
                f"docs/cli.md does not document 'dwf {name} {opt}'"
            )
    assert "--debug" in text
    assert "python -m dwf" in text


def _json_keys(value: object) -> set[str]:
    keys: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            keys.add(k)
            keys |= _json_keys(v)
    elif isinstance(value, list):
        for v in value:
            keys |= _json_keys(v)
    return keys


def test_info_json_keys_are_documented(tmp_path: Path) -> None:
    _, weights = write_demo(tmp_path)
    with dwf.open(weights) as f:
        keys = _json_keys(f.to_dict())  # what `dwf info --json` prints
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    missing = sorted(k for k in keys if f"`{k}`" not in text)
    assert not missing, f"docs/cli.md does not describe the --json keys {missing}"


def test_readme_links_every_docs_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"
    for name in OWN_PAGES:
        assert (DOCS / name).is_file(), f"docs/{name} is missing"


def _slugs(path: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    slugs: set[str] = set()
    for line in _headings(path):
        text = line.lstrip("#").strip().lower()
        base = re.sub(r"[^\w\- ]", "", text).replace(" ", "-")
        slug, n = base, 0
        while slug in slugs:
            n += 1
            slug = f"{base}-{n}"
        slugs.add(slug)
    return slugs


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # http:, https:, mailto:
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists() or (anchor and dest.suffix == ".md" and anchor not in _slugs(dest)):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_block_parser_honours_fences_and_flags(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n```python\nx = 1\n```\n\n1. item\n\n   ```python no-run\n   y = 2\n   ```\n"
        "````console\n$ dwf demo\n```\n````\n",
        encoding="utf-8",
    )
    found = list(blocks(page))
    assert [(b.lang, sorted(b.flags), b.line) for b in found] == [
        ("python", [], 3),
        ("python", ["no-run"], 9),
        ("console", [], 12),
    ]
    assert found[1].code == "y = 2\n"
    assert found[2].code == "$ dwf demo\n```\n"
    assert _matches(["a", "...", "d"], "a\nb\nc\nd\n")
    assert _matches(["a", "...", "b"], "a\nb\n")
    assert not _matches(["a", "b"], "a\nc\n")
