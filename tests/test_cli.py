"""The `caffezoo` command's grammar: --version, the documented exit status of each kind of
failure (docs/cli.md), and examples at the end of every subcommand's --help that the real
parser accepts."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from caffezoo import __version__, cli, errors

REPO = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "caffezoo", *argv], capture_output=True,
                          text=True, cwd=REPO)


def test_version_is_the_packages():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert __version__ == project["version"]
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"caffezoo {project['version']}"


def test_exit_status_of_each_kind_of_failure(tmp_path):
    # 2: argparse's own usage errors, and options that do not go together
    assert _run("info").returncode == 2
    assert _run("frobnicate").returncode == 2
    assert _run("generate", "--all", "-o", "-").returncode == 2
    # 3: a bad input: a missing file, a malformed one, an unknown model
    proc = _run("info", str(tmp_path / "missing.prototxt"))
    assert proc.returncode == 3 and "missing.prototxt" in proc.stderr
    bad = tmp_path / "bad.prototxt"
    bad.write_text('layer { name: "x" type: "Convolution" bottom: "nowhere" top: "y" }\n')
    proc = _run("info", str(bad))
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1
    assert _run("generate", "vgg16", "-o", "-").returncode == 3
    # 0 and the one-line message format
    assert _run("generate", "wrn50_2", "-o", "-").returncode == 0


def test_exit_codes_of_the_error_classes():
    """The classes map onto the documented codes (the CLI returns err.exit_code)."""
    assert errors.ValidationFailed.exit_code == errors.EXIT_CHECK_FAILED == 1
    assert errors.CaffezooError.exit_code == errors.UsageError.exit_code == errors.EXIT_USAGE == 2
    for cls in (errors.InputFileError, errors.FormatError, errors.NetDefinitionError,
                errors.WeightMismatchError, errors.ConversionError):
        assert cls.exit_code == errors.EXIT_BAD_INPUT == 3, cls
    assert errors.DependencyError.exit_code == errors.EXIT_DEPENDENCY == 4


@pytest.mark.parametrize("cls, code", [(errors.ValidationFailed, 1), (errors.UsageError, 2),
                                       (errors.FormatError, 3), (errors.DependencyError, 4)])
def test_main_returns_the_errors_code(cls, code, monkeypatch, capsys):
    from caffezoo.commands import zoo

    def fail(args):
        raise cls("x.prototxt: what went wrong")

    monkeypatch.setattr(zoo, "run", fail)
    assert cli.main(["zoo"]) == code
    assert capsys.readouterr().err == "caffezoo zoo: error: x.prototxt: what went wrong\n"


def test_exit_status_is_documented():
    doc = (REPO / "docs" / "cli.md").read_text()
    for code, name in ((1, "EXIT_CHECK_FAILED"), (2, "EXIT_USAGE"), (3, "EXIT_BAD_INPUT"),
                       (4, "EXIT_DEPENDENCY"), (130, "EXIT_INTERRUPTED")):
        assert getattr(errors, name) == code
        assert re.search(rf"^\| {code} \|", doc, re.M), f"docs/cli.md lacks exit status {code}"
    assert "exit status:" in _run("--help").stdout


def _examples(name: str) -> list[list[str]]:
    """Each example of `name`'s --help as argv (continuation lines joined, comments cut)."""
    text = cli.EXAMPLES[name].replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        argv = shlex.split(line, comments=True)
        assert argv[:2] == ["caffezoo", name], line
        out.append(argv[1:])
    return out


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_subcommand_help_ends_with_examples_the_parser_accepts(name):
    assert name in cli.EXAMPLES, f"add examples for `caffezoo {name}` to cli.EXAMPLES"
    for argv in _examples(name):
        args = cli.build_parser(argv).parse_args(argv)  # SystemExit(2) on a stale example
        assert args.command == name
    proc = _run(name, "--help")
    assert proc.returncode == 0
    help_text = proc.stdout.rstrip()
    assert "\nexamples:\n" in help_text
    assert help_text.endswith(cli.EXAMPLES[name].rstrip().splitlines()[-1])
