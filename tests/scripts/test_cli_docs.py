"""scripts/gen_cli_docs.py: the option and exit-code references match the CLIs, whatever the environment."""
from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.contract import EXIT_MEANINGS, ExitCode
from tests.conftest import REPO

GENERATOR = REPO / "scripts" / "gen_cli_docs.py"
BIN = Path(sys.executable).parent
# What a user's shell may hold; none of it may change the references.
HOSTILE_ENV = {
    "COLUMNS": "40", "MLFLOW_TRACKING_URI": "http://elsewhere.invalid:1", "EDGEQ_MODEL": "some-model",
    "EDGEQ_ALIAS": "canary", "EDGEQ_RUNS": "7", "XDG_STATE_HOME": "/srv/state",
}


@functools.cache
def _generator():
    """scripts/gen_cli_docs.py as a module (scripts/ is no package)."""
    spec = importlib.util.spec_from_file_location("gen_cli_docs", GENERATOR)
    module = sys.modules["gen_cli_docs"] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _gen(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(GENERATOR), *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference")
    done = _gen("--out", str(out), env={**HOSTILE_ENV, "HOME": str(out)})
    assert done.returncode == 0, done.stderr
    return out


def test_the_references_in_docs_are_up_to_date():
    done = _gen("--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_names_each_stale_file_in_one_line_and_exits_1(generated, tmp_path):
    (tmp_path / "edgeq.md").write_text((generated / "edgeq.md").read_text().replace("Usage: edgeq ", "Usage: old ", 1))
    done = _gen("--check", "--out", str(tmp_path))
    assert done.returncode == 1
    assert done.stdout.count("\n") == 1, done.stdout
    assert "edgeq.md +1 -1 lines" in done.stdout and "edgeq-pull.md missing" in done.stdout
    assert "scripts/gen_cli_docs.py" in done.stdout


def test_the_output_does_not_depend_on_the_environment(generated, tmp_path):
    plain = _gen("--out", str(tmp_path))
    assert plain.returncode == 0, plain.stderr
    for name in ("edgeq.md", "edgeq-pull.md"):
        assert (tmp_path / name).read_text() == (generated / name).read_text(), name
    # The environment would change the pages without the generator's clean child: the comparison above can fail.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    raw = subprocess.run([sys.executable, str(GENERATOR), "--render-into", str(scratch / "raw.json")], cwd=scratch,
                         env={**_generator().clean_env(str(scratch)), **HOSTILE_ENV}, capture_output=True, text=True,
                         timeout=300)
    assert raw.returncode == 0, raw.stderr
    assert "/srv/state/edgeq/<model>" in (scratch / "raw.json").read_text()
    assert "/srv/state" not in (generated / "edgeq-pull.md").read_text()


def test_every_exit_code_is_documented_with_its_meaning(generated):
    assert set(EXIT_MEANINGS) == set(ExitCode), "every ExitCode needs a meaning in edge.contract.EXIT_MEANINGS"
    for name in ("edgeq.md", "edgeq-pull.md"):
        text = generated / name
        for code in ExitCode:
            assert f"| {int(code)} | `{code.name}` | {EXIT_MEANINGS[code]} |" in text.read_text(), (name, code)


@pytest.mark.parametrize("command", [["edgeq"], ["edgeq", "promote"], ["edgeq-pull"], ["edgeq-pull", "schedule"]])
def test_each_page_is_what_help_prints_in_an_80_column_terminal(generated, tmp_path, command):
    env = _generator().clean_env(str(tmp_path))
    done = subprocess.run([str(BIN / command[0]), *command[1:], "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)} --help: exit {done.returncode}: {done.stderr.strip()[-300:]}"
    page = (generated / f"{command[0]}.md").read_text()
    section = page.split(f"\n## {' '.join(command)}\n\n```text\n", 1)[1].split("\n```\n", 1)[0]
    assert section == done.stdout.rstrip("\n")


def test_every_command_listed_by_help_has_a_section(generated):
    for cli in ("edgeq", "edgeq-pull"):
        page = (generated / f"{cli}.md").read_text()
        listed = page.split(f"\n## {cli}\n", 1)[1].split("Commands:\n", 1)[1].split("```", 1)[0]
        names = []
        for line in listed.splitlines():
            if not line.startswith("  "):  # the end of the list (an epilog may follow)
                break
            if line[2] != " ":  # a wrapped help line is indented further
                names.append(line.split()[0])
        assert names, cli
        for name in names:
            assert f"\n## {cli} {name}\n" in page, f"{cli} {name}"
