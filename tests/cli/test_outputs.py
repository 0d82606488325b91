"""A run's outputs land together or not at all (caffezoo/outputs.py): staged temp files,
renames under a journal, cleanup on errors and signals, recovery after kill -9."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from caffezoo import cli, netio
from caffezoo.errors import InputFileError, UsageError
from caffezoo.outputs import OutputSet, sweep

REPO = Path(__file__).resolve().parents[2]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".caffezoo-"))


def test_outputs_are_replaced_together(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "sub" / "b.txt"
    (tmp_path / "sub").mkdir()
    a.write_text("old a")
    with OutputSet([a, b]) as out:
        out.write(a, "new a")
        out.write(b, "new b")
        assert a.read_text() == "old a" and not b.exists()  # nothing lands before commit
        out.commit()
    assert a.read_text() == "new a" and b.read_text() == "new b"
    assert _leftovers(tmp_path) == [] and _leftovers(tmp_path / "sub") == []


def test_an_error_before_commit_changes_nothing_and_leaves_no_temp(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    with pytest.raises(RuntimeError), OutputSet([a, b]) as out:
        out.write(a, "new a")
        raise RuntimeError("the run failed half way")
    assert a.read_text() == "old a" and not b.exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("target, message", [
    ("FOLDER", "is a folder, expected an output file name"),
    ("new/", "is a folder"),
    ("missing/x.json", "output folder .*missing does not exist"),
    ("file.txt/x.json", "output folder .*file.txt is not a folder"),
])
def test_targets_are_checked_up_front(tmp_path, target, message):
    (tmp_path / "FOLDER").mkdir()
    (tmp_path / "file.txt").write_text("x")
    path = str(tmp_path / target) + ("/" if target.endswith("/") else "")
    with pytest.raises(InputFileError, match=message):
        OutputSet([path])


def test_kill_between_renames_is_completed_by_the_next_run(tmp_path):
    """What a kill -9 during commit leaves (one file renamed, the other still staged, the
    journal) is rolled forward when the next run touches the folder; dead runs' temps go."""
    pid = _dead_pid()
    model, proto = tmp_path / "m.caffemodel", tmp_path / "m.prototxt"
    model.write_text("old model")
    proto.write_text("old proto")
    staged = tmp_path / f".caffezoo-{pid}-abcd1234-m.prototxt.tmp"
    staged.write_text("new proto")
    model.write_text("new model")  # the first rename happened, then the kill
    journal = tmp_path / f".caffezoo-{pid}-abcd1234.journal"
    journal.write_text(json.dumps({"renames": [[str(tmp_path / "gone.tmp"), str(model)],
                                               [str(staged), str(proto)]]}))
    stale = tmp_path / f".caffezoo-{pid}-ffff0000-results.json.tmp"
    stale.write_text("half a file")
    mine = tmp_path / f".caffezoo-{os.getpid()}-00000000-x.tmp"  # a live run's: kept
    mine.write_text("in progress")
    OutputSet([tmp_path / "other.json"])  # any later run writing here sweeps it
    assert model.read_text() == "new model" and proto.read_text() == "new proto"
    assert _leftovers(tmp_path) == [mine.name]
    mine.unlink()
    assert sweep(tmp_path) == []


@pytest.mark.parametrize("renames", [
    "outside",  # a temp of ours, renamed into another folder
    "not_temp",  # an ordinary file renamed onto another
    [[1, 2]], [["a"]], "x", [None], {"a": "b"},  # not a list of path pairs
])
def test_a_hand_made_journal_moves_nothing(tmp_path, renames):
    """A journal is trusted only for what a commit writes: one of our temp files renamed onto
    a file of its own folder. Anything else in a dead run's journal is ignored."""
    pid = _dead_pid()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim, keep = elsewhere / "victim.txt", tmp_path / "keep.txt"
    victim.write_text("victim")
    keep.write_text("keep")
    temp = tmp_path / f".caffezoo-{pid}-abcd1234-x.tmp"
    temp.write_text("staged")
    if renames == "outside":
        renames = [[str(temp), str(victim)]]
    elif renames == "not_temp":
        renames = [[str(keep), str(elsewhere / "moved.txt")], [str(keep), str(tmp_path / "y")]]
    (tmp_path / f".caffezoo-{pid}-abcd1234.journal").write_text(json.dumps({"renames": renames}))
    done = sweep(tmp_path)
    assert victim.read_text() == "victim" and keep.read_text() == "keep"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["victim.txt"]
    assert done == [f"removed {temp}"] and _leftovers(tmp_path) == []


_SLOW_WRITER = """
import sys, time
from caffezoo import cli
from caffezoo.outputs import OutputSet, install_signal_handlers
install_signal_handlers()
folder = sys.argv[1]
with OutputSet([folder + "/a.bin", folder + "/b.bin"]) as out:
    out.write(folder + "/a.bin", b"x" * 10_000_000)
    print("staged", flush=True)
    time.sleep(60)
    out.commit()
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_remove_the_staged_files(tmp_path, sig):
    (tmp_path / "a.bin").write_bytes(b"old")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # A test run started in the background by a non-interactive shell inherits SIGINT ignored,
    # and Python then keeps it ignored: give the child the default disposition a terminal has.
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert proc.stdout.readline() == b"staged\n"
    assert len(_leftovers(tmp_path)) == 1
    proc.send_signal(sig)
    proc.wait(timeout=30)
    assert proc.returncode != 0
    assert _leftovers(tmp_path) == [] and (tmp_path / "a.bin").read_bytes() == b"old"


def test_sigkill_leaves_a_temp_that_the_next_run_sweeps(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(tmp_path)],
                            stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline() == b"staged\n"
    proc.kill()
    proc.wait(timeout=30)
    assert len(_leftovers(tmp_path)) == 1
    deadline = time.time() + 10
    while _leftovers(tmp_path) and time.time() < deadline:
        OutputSet([tmp_path / "next.json"])
    assert _leftovers(tmp_path) == []


def test_time_json_into_a_folder_is_refused_before_timing(tmp_path, capsys):
    (tmp_path / "speed.json").mkdir()
    assert cli.main(["time", "--model", "resnext50_32x4d", "--json",
                     str(tmp_path / "speed.json")]) == 3
    out, err = capsys.readouterr()
    assert out == ""  # refused before the net was even built
    assert "is a folder, expected an output file name" in err


def test_generate_into_a_file_path_is_one_line(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert cli.main(["generate", "resnext50_32x4d", "-o", str(tmp_path / "f")]) == 3
    assert capsys.readouterr().err.count("\n") == 1


def special_files(folder: Path) -> dict[str, Path]:
    """A FIFO, and (as root) a character device like /dev/null made in `folder`: outputs that
    a rename would replace. Made here, so a bug replaces a copy, never the system's."""
    out = {"fifo": folder / "fifo"}
    os.mkfifo(out["fifo"])
    if os.geteuid() == 0:
        out["chardev"] = folder / "null"
        os.mknod(out["chardev"], 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    return out


def test_devices_and_fifos_are_refused_never_replaced(tmp_path):
    for kind, path in special_files(tmp_path).items():
        before = os.stat(path)
        with pytest.raises(InputFileError, match="exists and is not a regular file"):
            OutputSet([path])
        link = tmp_path / f"link-to-{kind}"
        link.symlink_to(path)  # a link to one is refused as well
        with pytest.raises(InputFileError, match="not a regular file"):
            netio.atomic_write(link, "x")
        after = os.stat(path)
        assert (after.st_mode, after.st_ino, after.st_rdev) == \
            (before.st_mode, before.st_ino, before.st_rdev)
    assert _leftovers(tmp_path) == []


def test_two_outputs_on_one_file_are_a_usage_error(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text("mine")
    (tmp_path / "hard.txt").hardlink_to(a)
    (tmp_path / "soft.txt").symlink_to(a)
    for other in ("a.txt", "hard.txt", "soft.txt", "sub/../a.txt"):
        with pytest.raises(UsageError, match=r"--log .*\.txt: the same file as --predictions"):
            OutputSet([("--predictions", a), ("--log", tmp_path / other)])
    with pytest.raises(UsageError, match="the same file as --weights .an input of the run."):
        OutputSet({"-o": tmp_path / "soft.txt"}, inputs={"--weights": a})
    assert a.read_text() == "mine"
    OutputSet({"--log": tmp_path / "b.txt"}, inputs={"--weights": a, "--prototxt": None})


@pytest.mark.opencv
def test_eval_log_and_predictions_on_one_path_exit_2_before_evaluating(tmp_path, capsys):
    """Both used to be written to it, the log last: exit 0 and the predictions lost."""
    from caffezoo.random_weights import random_weights

    net = netio.parse_prototxt(_TINY)
    netio.write_prototxt(net, tmp_path / "n.prototxt")
    netio.write_caffemodel(netio.attach_weights(net, random_weights(net)),
                           tmp_path / "n.caffemodel")
    (tmp_path / "val.txt").write_text("missing.png 0\n")
    argv = ["eval", "--prototxt", str(tmp_path / "n.prototxt"), "--weights",
            str(tmp_path / "n.caffemodel"), "--val-list", str(tmp_path / "val.txt"),
            "--log", str(tmp_path / "out.txt"), "--predictions", str(tmp_path / "out.txt")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the same file as --log" in err
    assert not (tmp_path / "out.txt").exists()
    # an output on an input: the val list would be replaced by the log
    assert cli.main([*argv[:-4], "--log", str(tmp_path / "val.txt")]) == 2
    assert "--log" in capsys.readouterr().err
    assert (tmp_path / "val.txt").read_text() == "missing.png 0\n"


_TINY = """
layer { name: "data" type: "Input" top: "data"
  input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc"
  inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""

_FILE_SIZE_LIMITED = """
import resource, signal, sys
from caffezoo import cli
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), int(sys.argv[1])))
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.torch
@pytest.mark.parametrize("to", ["torch", "onnx"])
def test_a_full_disk_is_a_bad_input_naming_the_file(tmp_path, to):
    """A write that the system refuses half way (a full disk, a file size limit: here
    RLIMIT_FSIZE, EFBIG, as a full disk gives ENOSPC) is one line naming the file, exit 3, and
    leaves nothing; torch.save alone reported it as "unexpected pos" (exit 70)."""
    from caffezoo.random_weights import random_weights

    net = netio.parse_prototxt(_TINY)
    netio.write_prototxt(net, tmp_path / "n.prototxt")
    netio.write_caffemodel(netio.attach_weights(net, random_weights(net)),
                           tmp_path / "n.caffemodel")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", _FILE_SIZE_LIMITED, "1000", "export", "--to", to, "--prototxt",
         str(tmp_path / "n.prototxt"), "--weights", str(tmp_path / "n.caffemodel"), "-o",
         str(out / "net.bin")], capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)), timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and "cannot write: File too large" in proc.stderr
    assert list(out.iterdir()) == []
