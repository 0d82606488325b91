"""The committed caffezoo/proto/*_pb2.py files must be within the supported window of the
installed protobuf runtime. Protobuf's rule for Python: the runtime accepts generated code of its
own major version or the one before, and never code newer than itself (older majors are
unsupported even where they happen to run). regenerate.sh writes the files; this test reads the
version each file declares, independently of protobuf's own check."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

PROTO_DIR = Path(__file__).resolve().parents[2] / "caffezoo" / "proto"
GENERATED = sorted(PROTO_DIR.glob("*_pb2.py"))
HEADER = re.compile(r"^# Protobuf Python Version: (\d+)\.(\d+)\.(\d+)", re.M)
CHECK = re.compile(r"ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,\s*"
                   r"(\d+),\s*(\d+),\s*(\d+),")


def _version(text: str) -> tuple[int, int, int]:
    return tuple(int(x) for x in re.match(r"(\d+)\.(\d+)\.(\d+)", text).groups())


def supported(gencode: tuple[int, int, int], runtime: tuple[int, int, int]) -> bool:
    """Protobuf's cross-version rule (see the module docstring)."""
    return runtime[0] - gencode[0] in (0, 1) and gencode <= runtime


def test_the_rule():
    assert supported((7, 35, 1), (7, 36, 2))
    assert supported((6, 31, 1), (7, 36, 2))      # one major back
    assert not supported((4, 25, 1), (7, 36, 2))  # what was committed before
    assert not supported((7, 37, 0), (7, 36, 2))  # newer than the runtime
    assert not supported((8, 0, 0), (7, 36, 2))


def test_both_files_are_generated():
    assert [p.name for p in GENERATED] == ["caffe_pb2.py", "caffe_round_mode_pb2.py"]


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name)
def test_gencode_is_within_the_installed_runtimes_window(path):
    from google import protobuf

    text = path.read_text()
    header = HEADER.search(text)
    assert header, f"{path.name}: no 'Protobuf Python Version' line; run regenerate.sh"
    gencode = tuple(int(x) for x in header.groups())
    check = CHECK.search(text)
    assert check, f"{path.name}: no runtime version check (gencode older than 5.x)"
    assert tuple(int(x) for x in check.groups()) == gencode
    runtime = _version(protobuf.__version__)
    assert supported(gencode, runtime), (
        f"{path.name}: gencode {gencode} is outside the window of protobuf {runtime}")


def test_imports_without_a_version_warning():
    # A fresh interpreter with warnings as errors: protobuf warns about gencode one major back.
    code = "import caffezoo.proto as p; print(p.caffe_pb2.NetParameter(name='x').name)"
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "x"


@pytest.mark.caffe
def test_pycaffes_own_schema_coexists_in_one_process():
    """pycaffe registers `caffe.proto` (package caffe, compiled by the system protoc) in the
    same descriptor pool: both schemas load in either order and parse the same text."""
    code = """
import caffezoo.proto as ours
from caffezoo.frameworks import import_caffe
caffe = import_caffe()
from caffe.proto import caffe_pb2 as theirs
from google.protobuf import text_format
text = 'name: "n" layer { name: "p" type: "Pooling" pooling_param { ceil_mode: false } }'
a = text_format.Parse(text, ours.caffe_pb2.NetParameter())
b = text_format.Parse(text, theirs.NetParameter())
assert a.SerializeToString() == b.SerializeToString()
print(ours.caffe_pb2.DESCRIPTOR.package, theirs.DESCRIPTOR.package)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["caffezoo.caffe", "caffe"]
