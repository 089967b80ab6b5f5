"""docs/guard.md's walkthrough, run as written with real pullers: a bad version reaches production, the guard holds,
then rolls back, a person overrides."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from edge import contract
from registry_tools.cli import main
from tests.conftest import REPO
from tests.edge.registry_rest import MlflowRest, disagreeing_bundle, register_fixture
from tests.registry_tools.devices import enroll, new_model

EDGEQ_PULL = str(Path(sys.executable).with_name("edgeq-pull"))
MARKER = "<!-- walkthrough:"
LINE = re.compile(r"^ {4}\$ (edgeq(?:-pull)?) (.*?)\s+# exit (\d+)$")


def walkthrough() -> list[tuple[str, str, int]]:
    """(program, arguments, exit code) of each line of the walkthrough block in docs/guard.md."""
    text = (REPO / "docs" / "guard.md").read_text(encoding="utf-8")
    block = text[text.index(MARKER):].split("\n\n", 2)[1]
    steps = [LINE.match(line) for line in block.splitlines()]
    assert steps and all(steps), f"every line of the walkthrough is `$ edgeq… # exit N`:\n{block}"
    return [(m[1], m[2], int(m[3])) for m in steps]


def test_the_guard_walkthrough_runs_as_documented(server, client, tmp_path, monkeypatch):
    model = new_model(client, "edgeq-walkthrough", accept_unsigned=False)
    rest = MlflowRest(server.uri)
    assert register_fixture(rest, model, "int8", alias=None).version == "1"
    assert register_fixture(rest, model, "int8", alias=None, bundle=disagreeing_bundle("int8", tmp_path / "bad")).version == "2"
    for device in ("pi-door", "pi-gate", "pi-shed"):
        enroll(server, tmp_path / "state" / device, device, model)
    monkeypatch.chdir(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = server.uri
    outputs = []
    for program, args, code in walkthrough():
        argv = [a.replace("$M", model) for a in shlex.split(args)]
        if program == "edgeq":
            result = CliRunner().invoke(main, ["--tracking-uri", server.uri, *argv], catch_exceptions=False)
            got, output = result.exit_code, result.output
        else:
            proc = subprocess.run([EDGEQ_PULL, *argv], env=env, capture_output=True, text=True, timeout=300)
            got, output = proc.returncode, proc.stdout + proc.stderr
        assert got == code, f"$ {program} {args}\n{output}"
        outputs.append(output)
    said = "\n".join(outputs)
    for words in ("hold: too few devices in the window: 1 voted, 3 needed", "hold: breach 1 of 2 consecutive",
                  "production moved from v2 back to v1", "judges production again after",
                  "to promote it again say --override-guard", "too few devices in the window: 0 voted, 3 needed",
                  "override"):
        assert words in said, words
    assert client.get_registered_model(model).aliases[contract.DEFAULT_ALIAS] == "2"
