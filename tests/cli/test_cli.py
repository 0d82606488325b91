"""The `caffezoo` command's grammar: --version, the documented exit status of each kind of
failure (docs/cli.md), and examples at the end of every subcommand's --help that the real
parser accepts."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from caffezoo import __version__, cli, errors

REPO = Path(__file__).resolve().parents[2]


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


# -- one spelling per idea (caffezoo/cliargs.py) ----------------------------------------------

CANONICAL = {"output": ["-o", "--output"], "batch_size": ["-b", "--batch-size"],
             "workers": ["-j", "--workers"], "input_size": ["--input-size"], "json": ["--json"]}
OLD_SPELLINGS = {"--out", "--batch", "--batch-sizes", "--jobs", "--size", "--results"}
# the commands converted so far; every command once all are
UNIFIED = list(cli.COMMANDS)  # every command


def _visible_options(name: str) -> list[argparse.Action]:
    parser = cli.build_parser([name])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[name]._actions
            if a.option_strings and a.help is not argparse.SUPPRESS]


@pytest.mark.parametrize("name", UNIFIED)
def test_one_spelling_per_idea(name):
    for action in _visible_options(name):
        assert not OLD_SPELLINGS & set(action.option_strings), (name, action.option_strings)
        if action.dest in CANONICAL:
            assert action.option_strings == CANONICAL[action.dest], (name, action.dest)
        if action.dest == "json":
            assert action.nargs == "?" and action.const == "-", name


@pytest.mark.parametrize("name", UNIFIED)
def test_every_value_has_a_metavar_of_the_grammar(name):
    """No argparse default (`--input-size INPUT_SIZE`, `--limit LIMIT`): a value is named as
    the grammar names it (N, FILE, DIR, ZOO_NAME, ...), the same for the same idea."""
    same = {"--threads": ("N", "N1,N2"), "--seed": ("S",), "--model": ("ZOO_NAME",),
            "--weights": ("W",), "--prototxt": ("P",), "--limit": ("N",),
            "--input-size": ("N",)}
    for action in _visible_options(name):
        if action.nargs == 0:
            continue
        assert action.metavar is not None or action.choices is not None, \
            (name, action.option_strings)
        for option in action.option_strings:
            if option in same and action.metavar is not None:
                assert action.metavar in same[option], (name, option, action.metavar)


def test_top_level_help_is_for_users():
    text = _run("--help").stdout
    assert "Generate, convert and verify Caffe image classifiers" in text
    assert "caffezoo/commands" not in text and "imported only when used" not in text


def test_json_to_stdout_or_to_a_file(tmp_path, capsys):
    net = REPO / "prototxt" / "wrn50_2.prototxt"
    assert cli.main(["info", "--json", str(net)]) == 0  # the prototxt is not the JSON file
    out = capsys.readouterr().out
    assert json.loads(out)["name"] == "wrn50_2"
    target = tmp_path / "info.json"
    assert cli.main(["info", str(net), "--json", str(target)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("layer ") and "parameters:" in out  # the table on stdout
    assert json.loads(target.read_text()) == json.loads(
        subprocess.run([sys.executable, "-m", "caffezoo", "info", str(net), "--json", "-"],
                       capture_output=True, text=True, cwd=REPO).stdout)
    assert cli.main(["zoo", "wrn50_2", "--json"]) == 0
    assert [c["name"] for c in json.loads(capsys.readouterr().out)] == ["wrn50_2"]


def test_split_json_argument():
    from caffezoo.cliargs import split_json_argument as split

    assert split(["info", "--json", "net.prototxt"]) == ["info", "--json=-", "net.prototxt"]
    assert split(["info", "--json", "r.JSON", "n"]) == ["info", "--json", "r.JSON", "n"]
    assert split(["info", "--json", "-", "n"]) == ["info", "--json", "-", "n"]
    assert split(["info", "--json", "--weights", "w"]) == ["info", "--json", "--weights", "w"]
    assert split(["info", "--", "--json", "x"]) == ["info", "--", "--json", "x"]


def test_old_spellings_still_work_hidden_and_noted(capsys):
    args = cli.build_parser(["doctor"]).parse_args(["doctor", "--jobs", "3"])
    assert args.workers == 3
    assert "--jobs is deprecated; use -j/--workers" in capsys.readouterr().err
    assert cli.build_parser(["doctor"]).parse_args(["doctor", "-j", "1"]).workers == 1
    assert "--jobs" not in _run("doctor", "--help").stdout
    argv = ["eval", "--weights", "w", "--val-list", "v", "--results", "r.json"]
    args = cli.build_parser(argv).parse_args(argv)
    assert args.json == "r.json"
    assert "--results is deprecated; use --json FILE" in capsys.readouterr().err
