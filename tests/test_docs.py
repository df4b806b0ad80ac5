"""The docs stay honest: README.md and docs/*.md name only links, make targets, commands, options and environment
variables that exist, the configuration page lists exactly the variables the package reads, and the README stays
short. Each check is a function over text, tested below on a bad example too, so that none can pass vacuously."""

from __future__ import annotations

import argparse
import ast
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "muffin_v_chihuahua"
README = ROOT / "README.md"
CONFIGURATION = ROOT / "docs" / "configuration.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
README_LIMIT = 8192  # bytes

PROJECT_NAMES = ("muffin-v-chihuahua", "muffin_v_chihuahua")
VARIABLE = re.compile(r"\b(?:MUFFIN_V_CHIHUAHUA_[A-Z0-9_]*[A-Z0-9]|INFERENCE_URL)\b")
SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
# A command line's end: a comment, or a pipe or list operator outside [optional] brackets.
COMMAND_END = {"#", "|", "&", ";"}
OPTION = re.compile(r"(?<![\w-])--[A-Za-z][\w.-]*")
SUBCOMMAND = re.compile(r"(?<![\w/.:-])(?:muffin-v-chihuahua|python -m muffin_v_chihuahua)[ \t]+([a-z][a-z0-9-]*)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.*?)[ \t]*#*[ \t]*$")
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")


# ----- reading Markdown -----


def split(text: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """The prose (every fenced block's lines blanked, so line numbers hold) and the fenced blocks: (language, lines)."""
    prose: list[str] = []
    blocks: list[tuple[str, list[str]]] = []
    fence: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if fence is None and stripped.startswith(("```", "~~~")):
            fence = stripped[:3]
            blocks.append((stripped[3:].strip().split(" ")[0].lower(), []))
            prose.append("")
        elif fence is not None and stripped.startswith(fence):
            fence = None
            prose.append("")
        elif fence is not None:
            blocks[-1][1].append(line)
            prose.append("")
        else:
            prose.append(line)
    return "\n".join(prose), blocks


def inline_code(prose: str) -> list[str]:
    return [match.group(2).replace("\\|", "|") for match in INLINE_CODE.finditer(prose)]


def command_lines(text: str) -> list[tuple[str, bool]]:
    """The text's command lines: each inline code span, and each line of its shell blocks (continuations joined),
    with whether it is from a shell block."""
    prose, blocks = split(text)
    lines = [(code, False) for code in inline_code(prose)]
    for language, block in blocks:
        if language in SHELL_LANGUAGES:
            lines += [(line, True) for line in "\n".join(block).replace("\\\n", " ").splitlines()]
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without Markdown, lower case, punctuation and emoji dropped, each
    space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"[`*_~]", lambda match: "_" if match.group() == "_" else "", text)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor, GitHub's way: a repeated slug gets -1, -2..."""
    prose, _ = split(text)
    seen: dict[str, int] = {}
    found = set()
    for line in prose.splitlines():
        match = HEADING.match(line)
        if not match:
            continue
        name = slug(match.group(2))
        found.add(f"{name}-{seen[name]}" if name in seen else name)
        seen[name] = seen.get(name, 0) + 1
    return found


# ----- the checks: each returns the problems it found -----


def broken_links(path: Path, text: str) -> list[str]:
    """Links to files that do not exist, to headings a page lacks, or to this project by an absolute URL."""
    prose, _ = split(text)
    prose = INLINE_CODE.sub("", prose)  # a link shown as code is not a link
    problems = []
    for target in LINK.findall(prose):
        if target.startswith(("http://", "https://")):
            if any(name in target.lower() for name in PROJECT_NAMES):
                problems.append(f"{path.name}: {target}: link to this project's files relatively")
            continue
        if target.startswith("mailto:"):
            continue
        file, _, anchor = target.partition("#")
        linked = (path.parent / file).resolve() if file else path
        if not linked.is_file():
            problems.append(f"{path.name}: {target}: no such file")
        elif anchor and anchor not in anchors(linked.read_text(encoding="utf-8")):
            problems.append(f"{path.name}: {target}: no heading #{anchor} in {linked.name}")
    return problems


def makefile_targets(makefile: str) -> set[str]:
    targets = set()
    for line in makefile.splitlines():
        match = re.match(r"^([^\s:#=][^:#=]*?)\s*:(?![=:])", line)
        if match:
            targets |= {name for name in match.group(1).split() if not name.startswith((".", "$"))}
    return targets


def words(line: str) -> list[str]:
    """A command line's words as the shell splits them (quotes kept together); operators are words of their own."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True  # a word ends at a space or an operator only (URLs, VAR=value stay whole)
    try:
        return list(lexer)
    except ValueError:  # an unbalanced quote in a code span that is not a command
        return line.split()


def make_targets_named(text: str) -> set[str]:
    """The targets of every `make ...` in the text's code: the words after make that are not VAR=value or options."""
    named = set()
    for line, _ in command_lines(text):
        tokens = words(line)
        for start in (i for i, token in enumerate(tokens) if token == "make"):
            for token in tokens[start + 1 :]:
                if set(token) <= set("|&;()<>"):
                    break
                if "=" not in token and not token.startswith("-"):
                    named.add(token)
    return named


def unknown_make_targets(text: str, targets: set[str]) -> list[str]:
    return sorted(f"make {name}" for name in make_targets_named(text) - targets)


def command_rest(line: str) -> str:
    """The line up to its comment, or up to a pipe or list operator outside [optional] brackets."""
    depth = 0
    for i, char in enumerate(line):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if (char == "#" and (i == 0 or line[i - 1].isspace())) or (char in COMMAND_END and depth <= 0):
            return line[:i]
    return line


def bad_commands(text: str, options: dict[str, set[str]]) -> list[str]:
    """`muffin-v-chihuahua SUBCOMMAND` with an unknown subcommand; in shell blocks and code spans, an --option after
    it that the subcommand lacks (run-demo passes Streamlit's --section.name options through)."""
    problems = []
    for line, _ in command_lines(text):
        for match in SUBCOMMAND.finditer(line):
            name = match.group(1)
            if name not in options:
                problems.append(f"{match.group(0)}: no such command")
                continue
            for option in OPTION.findall(command_rest(line[match.end() :])):
                if option not in options[name] and not (name == "run-demo" and "." in option):
                    problems.append(f"{match.group(0)} {option}: no such option")
    return problems


def variables_named(text: str) -> set[str]:
    return set(VARIABLE.findall(text))


def variables_in_source(folder: Path) -> set[str]:
    """The variable names the package's source holds as string literals of their own (VARIABLE = "..."), whatever
    reads them (os.environ, environment.setting, a settings class)."""
    found = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and VARIABLE.fullmatch(node.value):
                found.add(node.value)
    return found


def configuration_table(text: str) -> set[str]:
    """The variables named in the first cell of the page's table rows."""
    rows = [line.split("|")[1] for line in text.splitlines() if line.startswith("|") and line.count("|") > 2]
    return {name for cell in rows for name in VARIABLE.findall(cell)}


# ----- the CLI's parser -----


def cli_options() -> dict[str, set[str]]:
    """Each subcommand of the console script's parser and its options, from the function in muffin_v_chihuahua's
    __main__ (defined or imported there) that builds the parser with subcommands."""
    from muffin_v_chihuahua import __main__ as script

    for value in vars(script).values():
        if not callable(value) or "ArgumentParser" not in str(getattr(value, "__annotations__", {}).get("return")):
            continue
        try:
            parser = value()
        except TypeError:  # it wants arguments: not the builder
            continue
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                return {
                    name: {option for sub_action in sub._actions for option in sub_action.option_strings}
                    for name, sub in action.choices.items()
                }
    raise AssertionError("no function in muffin_v_chihuahua.__main__ builds an argparse parser with subcommands")


@pytest.fixture(scope="module")
def options() -> dict[str, set[str]]:
    return cli_options()


# ----- the docs -----


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_every_relative_link_resolves_to_a_file_and_heading(path):
    assert broken_links(path, path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_every_make_target_named_is_in_the_makefile(path):
    targets = makefile_targets((ROOT / "makefile").read_text(encoding="utf-8"))
    assert unknown_make_targets(path.read_text(encoding="utf-8"), targets) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_every_command_and_option_shown_exists(path, options):
    assert bad_commands(path.read_text(encoding="utf-8"), options) == []


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_every_environment_variable_named_is_read_by_the_package(path):
    assert variables_named(path.read_text(encoding="utf-8")) - variables_in_source(PACKAGE) == set()


def test_the_configuration_page_lists_exactly_the_variables_the_package_reads():
    read = variables_in_source(PACKAGE)
    assert len(read) >= 10  # the scan finds them: an empty one would pass the comparison below
    assert configuration_table(CONFIGURATION.read_text(encoding="utf-8")) == read


def test_the_readme_is_short():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size:,} bytes, over {README_LIMIT:,}: move the detail into docs/"


def test_the_readme_keeps_the_two_commands():
    _, blocks = split(README.read_text(encoding="utf-8"))
    commands = [line.split("#")[0].strip() for language, block in blocks if language == "sh" for line in block]
    assert {"make run-app", "make test"} <= set(commands)


# ----- the checks catch what they are for -----

BAD_PAGE = """# A page

## Bulk work: `batch` on a Ray cluster

See [the other](other.md), [a heading](#bulk-work-batch-on-a-ray-cluster), [a lost one](#nowhere),
[absolute](https://github.com/someone/muffin-v-chihuahua/blob/main/README.md) and `[not a link](gone.md)`.

```sh
make test PYTEST_ARGS="-m 'not container'"   # make no-such-target in a comment
make run-app PORT=8501 && make flying-pigs
muffin-v-chihuahua predict PATH... [--json | --csv] --no-such-option
muffin-v-chihuahua run-demo --server.port 8501 --engine onnx
muffin-v-chihuahua fly
```

`MUFFIN_V_CHIHUAHUA_NO_SUCH_SETTING` and `INFERENCE_URL`.
"""


def test_the_link_check_finds_a_missing_file_a_missing_heading_and_an_absolute_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(BAD_PAGE, encoding="utf-8")
    assert broken_links(page, BAD_PAGE) == [
        "page.md: other.md: no such file",
        "page.md: #nowhere: no heading #nowhere in page.md",
        "page.md: https://github.com/someone/muffin-v-chihuahua/blob/main/README.md: link to this project's files "
        "relatively",
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Bulk work: `batch` on a Ray cluster", "bulk-work-batch-on-a-ray-cluster"),
        ("Muffin 🍪 or chihuahua 🐶", "muffin--or-chihuahua-"),
        ("The console script: `muffin-v-chihuahua`", "the-console-script-muffin-v-chihuahua"),
        ("Limits: bad input and load", "limits-bad-input-and-load"),
        ("snake_case and **bold**", "snake_case-and-bold"),
    ],
)
def test_anchors_are_githubs(heading, anchor):
    assert slug(heading) == anchor


def test_a_repeated_heading_gets_a_numbered_anchor():
    assert anchors("# Usage\n## Usage\n```sh\n# not a heading\n```\n") == {"usage", "usage-1"}


def test_the_make_check_finds_a_target_the_makefile_lacks():
    targets = makefile_targets((ROOT / "makefile").read_text(encoding="utf-8"))
    assert {"run-app", "test", "lint", "k8s-validate", "package-docker"} <= targets
    assert make_targets_named(BAD_PAGE) == {"test", "run-app", "flying-pigs"}
    assert unknown_make_targets(BAD_PAGE, targets) == ["make flying-pigs"]


def test_the_command_check_finds_an_unknown_command_and_option(options):
    assert {"run-demo", "predict", "evaluate", "batch", "info", "serve"} <= set(options)
    assert bad_commands(BAD_PAGE, options) == [
        "muffin-v-chihuahua predict --no-such-option: no such option",
        "muffin-v-chihuahua fly: no such command",
    ]


def test_the_variable_check_finds_a_variable_the_package_does_not_read():
    assert variables_named(BAD_PAGE) - variables_in_source(PACKAGE) == {"MUFFIN_V_CHIHUAHUA_NO_SUCH_SETTING"}


def iter_rows(names: set[str]) -> Iterator[str]:
    yield "| variable | default |"
    yield "|---|---|"
    for name in sorted(names):
        yield f"| `{name}` | `MUFFIN_V_CHIHUAHUA_CPUS`'s value |"


def test_the_configuration_check_reads_the_first_column_only():
    table = "\n".join(iter_rows({"INFERENCE_URL", "MUFFIN_V_CHIHUAHUA_LOG_FORMAT"}))
    assert configuration_table(table) == {"INFERENCE_URL", "MUFFIN_V_CHIHUAHUA_LOG_FORMAT"}
