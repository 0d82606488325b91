"""A run's output files, written so that they land together or not at all (docs/reliability.md).

    outputs = OutputSet([args.results, args.log])   # checked now, before hours of work
    ...
    outputs.write(args.results, text)              # staged: a temp file beside the target
    with outputs.open(args.log) as f: ...          # or netio writers on outputs.stage(path)
    outputs.commit()                               # every rename, then done

How:
- every file is first written in full to a temp file in its destination folder, named
  `.caffezoo-<pid>-<random>-<name>.tmp`, and fsync'ed;
- `commit()` writes a journal (`.caffezoo-<pid>-<random>.journal`, the list of temp -> target
  renames) into every target folder, fsyncs it, does the renames with SIGINT/SIGTERM/SIGHUP
  held back, and deletes the journal;
- `sweep(folder)` (run by every OutputSet for each folder it writes into, before it writes)
  finishes the renames of a journal whose process is dead (a kill -9 or power loss between two
  renames: the set is completed, "roll forward") and removes temp files of dead processes.

So a run interrupted by SIGINT/SIGTERM/SIGHUP or an error changes none of its targets and leaves
no temp file; one killed by SIGKILL during the renames leaves a mixed set until the next caffezoo
run that writes into that folder completes it. POSIX renames are atomic one by one, not as a
group: this is as close to all-or-nothing as plain files allow.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import stat
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from caffezoo.errors import InputFileError, UsageError

PREFIX = ".caffezoo-"
_TEMP = re.compile(r"^\.caffezoo-(\d+)-[0-9a-f]+(?:-.*)?\.(?:tmp|journal)$")
_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def temp_name(target: Path) -> Path:
    """A fresh temp path beside `target`, recognisable by `sweep` (prefix, pid)."""
    return target.with_name(f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{target.name}.tmp")


def check_target(path: str | os.PathLike, create_dirs: bool = False) -> Path:
    """`path` as an output file: not a folder, in a folder that exists (or is created with
    `create_dirs`) and that we may write into, and not an existing device, FIFO or socket (an
    output is renamed onto its path, which would replace them). Raises InputFileError (one
    line) otherwise."""
    try:
        return _check_target(path, create_dirs)
    except OSError as err:  # a name too long, a loop of links...
        raise InputFileError(f"{path}: unusable output path: {err.strerror or err}") from None


def _check_target(path: str | os.PathLike, create_dirs: bool) -> Path:
    target = Path(path).expanduser()
    if str(path).endswith(os.sep) or target.is_dir():
        raise InputFileError(f"{path}: is a folder, expected an output file name")
    folder = target.parent
    if create_dirs:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise InputFileError(f"{path}: cannot create folder {folder}: "
                                 f"{err.strerror or err}") from None
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise InputFileError(f"{path}: output folder {folder} {what}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputFileError(f"{path}: output folder {folder} is not writable")
    kind = _special_kind(target)
    if kind:
        # an output is replaced by a rename: the device or FIFO itself would be replaced
        raise InputFileError(f"{path}: exists and is not a regular file ({kind}); caffezoo "
                             "writes a new file and renames it onto the path, which would "
                             "replace it")
    return target


def _special_kind(path: Path) -> str | None:
    """What `path` is when it exists and is not a regular file (nor a link to one)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    for test, kind in ((stat.S_ISREG, None), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return kind
    return "not a file"


def distinct(outputs: Mapping[str, str | os.PathLike | None]
             | Iterable[tuple[str, str | os.PathLike | None]],
             inputs: Mapping[str, str | os.PathLike | None] | None = None) -> None:
    """Refuses (UsageError, exit 2) two outputs on one file, and an output that is one of the
    run's inputs: one would silently replace the other. Labels are what the user wrote (the
    option), values the paths (None: not given); links and `..` are resolved first."""
    seen: dict[str, str] = {}
    for label, path in (inputs or {}).items():
        if path is not None:
            seen.setdefault(_same_file_key(path), label)
    given_inputs = dict(seen)
    pairs = outputs.items() if isinstance(outputs, Mapping) else outputs
    for label, path in pairs:
        if path is None:
            continue
        key = _same_file_key(path)
        if key in seen:
            what = "an input of the run" if key in given_inputs else "another output"
            raise UsageError(f"{label} {path}: the same file as {seen[key]} ({what}); give "
                             "each output its own path")
        seen[key] = label


def _same_file_key(path: str | os.PathLike) -> str:
    """One key per file: its device and inode when it exists (hard links too), else the
    resolved path."""
    resolved = os.path.realpath(os.path.expanduser(os.fspath(path)))
    try:
        st = os.stat(resolved)
    except (OSError, ValueError):
        return resolved
    return f"{st.st_dev}:{st.st_ino}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _journal_renames(journal: Path) -> list[tuple[str, str]]:
    """The renames a journal lists, only those a caffezoo commit could have written: a temp
    file of ours renamed onto a file of the same folder. A journal cut short was never acted
    on (nothing was renamed); one that lists anything else (hand-made, or corrupt) must not
    move files around: those entries are ignored."""
    try:
        renames = json.loads(journal.read_text(encoding="utf-8"))["renames"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return []
    out = []
    for entry in renames if isinstance(renames, list) else []:
        if (isinstance(entry, list) and len(entry) == 2
                and all(isinstance(p, str) and p and "\0" not in p for p in entry)):
            tmp, target = Path(entry[0]), Path(entry[1])
            if (tmp.parent == target.parent and tmp.name.endswith(".tmp")
                    and _TEMP.match(tmp.name) and not _TEMP.match(target.name)):
                out.append((entry[0], entry[1]))
    return out


def sweep(folder: str | os.PathLike) -> list[str]:
    """Recover `folder` from dead caffezoo runs: complete the renames of their journals, then
    delete their temp files. Returns what was done, one line each (for tests and notes)."""
    folder = Path(folder)
    done: list[str] = []
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return done
    dead = []
    for name in entries:
        m = _TEMP.match(name)
        if m and not _pid_alive(int(m.group(1))):
            dead.append(name)
    for name in [n for n in dead if n.endswith(".journal")]:  # journals first: roll forward
        journal = folder / name
        for tmp, target in _journal_renames(journal):
            if os.path.exists(tmp):
                with contextlib.suppress(OSError):
                    os.replace(tmp, target)
                    done.append(f"completed {target}")
        journal.unlink(missing_ok=True)
    for name in dead:
        if name.endswith(".tmp") and (folder / name).exists():
            with contextlib.suppress(OSError):
                (folder / name).unlink()
                done.append(f"removed {folder / name}")
    return done


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP wait until the block is done (main thread only)."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    except (ValueError, OSError):  # not the main thread: nothing to hold
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class OutputSet:
    """The output files of one run: checked up front, staged, renamed together (see the
    module docstring). Use as a context manager so that an error or an interrupt removes the
    staged files."""

    def __init__(self, targets: Mapping[str, str | os.PathLike | None]
                 | Iterable[str | os.PathLike | tuple[str, str | os.PathLike | None] | None]
                 = (), create_dirs: bool = False,
                 inputs: Mapping[str, str | os.PathLike | None] | None = None) -> None:
        """`targets`: paths, or (option, path) pairs or {option: path} so that errors name
        the option; None paths are skipped. Two targets on one file, or a target that is one
        of `inputs` ({option: path}), is a UsageError."""
        self.create_dirs = create_dirs
        self._targets: dict[Path, Path | None] = {}  # target -> staged temp (None: not yet)
        self._swept: set[Path] = set()
        self.committed = False
        named = list(targets.items()) if isinstance(targets, Mapping) else \
            [t if isinstance(t, tuple) else (str(t), t) for t in targets]
        distinct(named, inputs)
        for _, t in named:
            if t is not None:
                self.add(t)

    def add(self, target: str | os.PathLike) -> Path:
        """Checks and registers a target; returns it as a Path."""
        path = check_target(target, self.create_dirs)
        key = path.absolute()
        self._targets.setdefault(key, None)
        if key.parent not in self._swept:
            self._swept.add(key.parent)
            sweep(key.parent)
        return path

    def stage(self, target: str | os.PathLike) -> Path:
        """The temp path to write `target`'s content to (any writer, e.g. netio's)."""
        key = self.add(target).absolute()
        old = self._targets[key]
        if old is not None:
            old.unlink(missing_ok=True)
        tmp = temp_name(key)
        self._targets[key] = tmp
        return tmp

    @contextlib.contextmanager
    def open(self, target: str | os.PathLike) -> Iterator[BinaryIO]:
        tmp = self.stage(target)
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())

    def write(self, target: str | os.PathLike, data: bytes | str) -> None:
        with self.open(target) as f:
            # surrogateescape: a file name that is not UTF-8 is written back as its bytes
            f.write(data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data)

    def commit(self) -> None:
        """Renames every staged file onto its target (targets never staged are left alone)."""
        staged = [(tmp, target) for target, tmp in self._targets.items() if tmp is not None]
        if not staged:
            self.committed = True
            return
        for tmp, _ in staged:
            if not tmp.exists():
                raise InputFileError(f"{tmp}: staged output vanished before commit")
            with contextlib.suppress(OSError):  # netio writers fsync; make sure for others
                fd = os.open(tmp, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
            os.chmod(tmp, 0o644)
        folders = list(dict.fromkeys(target.parent for _, target in staged))
        journals: list[Path] = []
        with signals_held():
            if len(staged) > 1:
                # One copy per folder involved: whichever folder a later run sweeps first
                # completes the whole set.
                name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(4)}.journal"
                data = json.dumps({"renames": [[str(t), str(d)] for t, d in staged]})
                for folder in folders:
                    journals.append(folder / name)
                    with open(journals[-1], "w", encoding="utf-8") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    _fsync_dir(folder)
            for tmp, target in staged:
                os.replace(tmp, target)
            for folder in folders:
                _fsync_dir(folder)
            for journal in journals:
                journal.unlink(missing_ok=True)
            for target in self._targets:
                self._targets[target] = None
            self.committed = True

    def discard(self) -> None:
        """Removes every staged temp file; targets keep their old content."""
        for target, tmp in self._targets.items():
            if tmp is not None:
                tmp.unlink(missing_ok=True)
                # a netio writer may have left its own temp beside ours when interrupted
                self._targets[target] = None

    def __enter__(self) -> OutputSet:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def install_signal_handlers() -> None:
    """SIGTERM and SIGHUP raise SystemExit (128 + signal number) like Ctrl-C raises
    KeyboardInterrupt, so that `with` blocks and `finally` clauses clean up on the way out."""
    def _exit(signum, _frame) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):  # not the main thread
            signal.signal(sig, _exit)
