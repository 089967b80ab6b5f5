"""The docs speak to users: no tracker numbers or internal history, and every `$ edgeq …` / `$ edgeq-pull …` they show parses."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from edge.cli import main as edgeq_pull
from registry_tools.cli import main as edgeq
from tests.conftest import REPO

PAGES = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("**/*.md"))]
# Words that speak to the people who built it, not to the people who use it.
INTERNAL = re.compile(r"\bissues? \d+|\(issue\b|\bthe lead'?s?\b|What the puller wires|this transcript is from before",
                      re.IGNORECASE)
COMMAND = re.compile(r"^\s*\$ (edgeq(?:-pull)?) (.*)$")


def _internal_words(page: Path) -> list[str]:
    return [f"{page.relative_to(REPO)}:{n}: {m.group(0)!r}"
            for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
            for m in INTERNAL.finditer(line)]


def test_no_page_speaks_of_issue_numbers_or_internal_history():
    found = [hit for page in PAGES for hit in _internal_words(page)]
    assert not found, "\n".join(found)


def _parse(group: click.Group, name: str, args: list[str]) -> None:
    """Parse ``args`` as the command line would, down to the leaf command, without running anything."""
    ctx = group.make_context(name, list(args), resilient_parsing=False)
    rest = ctx.protected_args + ctx.args if hasattr(ctx, "protected_args") else ctx.args
    while isinstance(ctx.command, click.Group) and rest:
        sub_name, sub, rest = ctx.command.resolve_command(ctx, rest)
        ctx = sub.make_context(sub_name, rest, parent=ctx, resilient_parsing=False)
        rest = (ctx.protected_args + ctx.args) if isinstance(sub, click.Group) else []


def _commands() -> list[tuple[str, str, list[str]]]:
    out = []
    for page in PAGES:
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            m = COMMAND.match(line)
            if not m or "--help" in line or "--version" in line:
                continue
            text = m.group(2).split(" # ")[0].split("  #")[0].rstrip(" \\")
            try:
                args = shlex.split(text)
            except ValueError:
                continue  # a command cut across lines: the continuation is not on this line
            args = [a for a in args if not a.startswith(("|", ">")) and a not in ("...", "…")]  # "…": options left out
            out.append((f"{page.relative_to(REPO)}:{n}", m.group(1), args))
    return out


@pytest.mark.parametrize("where,program,args", _commands(), ids=lambda v: v if isinstance(v, str) and ":" in v else "")
def test_every_command_the_docs_show_parses(where, program, args):
    group, name = (edgeq, "edgeq") if program == "edgeq" else (edgeq_pull, "edgeq-pull")
    try:
        _parse(group, name, args)
    except click.UsageError as exc:
        pytest.fail(f"{where}: `{program} {' '.join(args)}` does not parse: {exc.format_message()}")


def test_no_code_speaks_of_issue_numbers():
    sources = [p for part in ("edge", "registry_tools", "steps", "bench", "scripts") for p in sorted((REPO / part).rglob("*"))
               if p.suffix in (".py", ".sh") and p.is_file()]
    found = [f"{p.relative_to(REPO)}:{n}" for p in sources
             for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if re.search(r"\bissues? \d+|\(issue \d", line)]
    assert not found, "\n".join(found)
