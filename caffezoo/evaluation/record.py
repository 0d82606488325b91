"""The per-image record of an evaluation: what makes a run resumable, and the one thing both
executors (in-process and Ray) write.

A record is a text file of lines, each a JSON object, a tab and the CRC-32 of the JSON (hex):

    {"record": "caffezoo-eval", "version": 1, "images": 50000, "fingerprint": {...}}<TAB>crc
    {"session": 1, "executor": "local", "started": "2026-12-05T10:00:00"}<TAB>crc
    {"i": 0, "t": 0.41, "top": [65, 62, 58, 33, 1], "scores": [0.91, ...]}<TAB>crc
    {"i": 7, "t": 3.02, "error": "img7.JPEG: truncated JPEG (no end-of-image marker)"}<TAB>crc

`i` is the image's 0-based place in the list, `t` the seconds since its session started, `top`
the best classes and `scores` their mean scores (exact: Python's float repr round-trips).

Why it survives kill -9 and power loss: lines are only ever appended, each in one write(2) of
whole lines (a killed process leaves either all of a write or none of it); the file is fsync'ed
every few seconds and when the run ends. A line whose CRC or JSON is wrong can only be the last
one (a write cut short by a power loss, or zeros from a filesystem that lost the tail): it is
dropped on resume, never counted. A bad line anywhere else means the file was edited or damaged,
and the record is refused.

The header's fingerprint says what was evaluated (model bytes, list, preprocessing, backend
settings); a resume compares it field by field and refuses, naming what differs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from caffezoo.errors import InputFileError, UsageError

FORMAT = "caffezoo-eval"
VERSION = 1
FSYNC_EVERY_S = 2.0
HEADER_START = b'{"record":"caffezoo-eval"'


@dataclass(frozen=True)
class Entry:
    """One image's result: its best classes and their mean scores, or why it was skipped."""

    index: int
    top: tuple[int, ...] = ()
    scores: tuple[float, ...] = ()
    error: str | None = None
    t: float = 0.0  # seconds since its session started

    def to_dict(self) -> dict:
        d: dict[str, object] = {"i": self.index, "t": round(self.t, 3)}
        if self.error is None:
            d["top"], d["scores"] = list(self.top), list(self.scores)
        else:
            d["error"] = self.error
        return d


def encode_line(obj: Mapping) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    data = text.encode("utf-8")
    return data + b"\t" + f"{zlib.crc32(data):08x}".encode() + b"\n"


def decode_line(line: bytes) -> dict | None:
    """The object of one line (without its newline), or None when it is not a whole line."""
    body, tab, crc = line.rpartition(b"\t")
    if not tab or crc != f"{zlib.crc32(body):08x}".encode():
        return None
    try:
        obj = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _entry(obj: dict, listed: int) -> Entry | None:
    i = obj.get("i")
    if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < listed:
        return None
    t = obj.get("t", 0.0)
    t = float(t) if isinstance(t, int | float) and not isinstance(t, bool) else 0.0
    if isinstance(obj.get("error"), str):
        return Entry(i, error=obj["error"], t=t)
    top, scores = obj.get("top"), obj.get("scores")
    if (isinstance(top, list) and isinstance(scores, list) and len(top) == len(scores)
            and all(isinstance(c, int) and not isinstance(c, bool) for c in top)
            and all(isinstance(s, int | float) and not isinstance(s, bool) for s in scores)):
        return Entry(i, tuple(top), tuple(float(s) for s in scores), t=t)
    return None


def differences(recorded: Mapping, current: Mapping) -> list[str]:
    """What differs between two fingerprints, one phrase each, in the current one's order
    ("batch size (16 in the record, 8 now)"; for a nested field, its sub-fields)."""
    out = []
    for key in list(current) + [k for k in recorded if k not in current]:
        old, new = recorded.get(key), current.get(key)
        if old == new:
            continue
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            out.append(f"{key}: {', '.join(_changed(old, new))}")
        else:
            out.append(f"{key} ({_show(old)} in the record, {_show(new)} now)")
    return out


def _changed(old: Mapping, new: Mapping, prefix: str = "") -> list[str]:
    """The sub-fields that differ, nested ones by their path ("contract interpolation")."""
    parts = []
    for k in list(new) + [k for k in old if k not in new]:
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            parts += _changed(a, b, f"{prefix}{k} ")
        else:
            parts.append(f"{prefix}{k} {_show(a)} in the record, {_show(b)} now")
    return parts


def _show(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, str) and value.startswith("sha256:"):
        return value[:19]  # "sha256:" and 12 hex digits name a file's bytes well enough
    if isinstance(value, list):
        return ",".join(_show(v) for v in value)
    return str(value)


def recorded_fingerprint(path: str | os.PathLike) -> dict | None:
    """The fingerprint in a record's header, or None (no file, or not a record)."""
    try:
        with open(path, "rb") as f:
            header = decode_line(f.readline().rstrip(b"\n"))
    except OSError:
        return None
    if header is None or header.get("record") != FORMAT:
        return None
    fingerprint = header.get("fingerprint")
    return fingerprint if isinstance(fingerprint, dict) else None


class Record:
    """The record of one evaluation, in memory and (with a path) in its file. `add` keeps the
    first result of every image and ignores repeats (a unit redone after an interruption)."""

    def __init__(self, path: Path | None, fingerprint: Mapping, listed: int) -> None:
        self.path = path
        self.fingerprint = dict(fingerprint)
        self.listed = listed
        self.entries: dict[int, Entry] = {}
        self.earlier_wall_s: list[float] = []  # per earlier session: its last image's t
        self.sessions = 0
        self.started_here = False  # whether this run started a session (had work left)
        self.dropped_tail = False  # a cut-short last line was dropped on opening
        self._fd: int | None = None
        self._t0 = time.perf_counter()
        self._last_sync = time.monotonic()

    # -- opening ---------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike | None, fingerprint: Mapping, listed: int,
             resume: bool = False) -> Record:
        """A new record (refused if `path` holds one and `resume` is off), or the one in `path`
        continued (refused if its fingerprint differs). None: kept in memory only."""
        record = cls(Path(path) if path is not None else None, fingerprint, listed)
        if record.path is None:
            return record
        from caffezoo.outputs import check_target

        check_target(record.path)  # a file in a writable folder, not a folder or a device
        try:
            record._fd = os.open(record.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        except OSError as err:
            raise InputFileError(f"{record.path}: cannot write the record "
                                 f"({err.strerror or err})") from None
        try:
            try:  # one writer at a time: a second run on the same record would interleave
                fcntl.flock(record._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise UsageError(f"{record.path}: the record is in use by another running "
                                 "evaluation") from None
            if os.fstat(record._fd).st_size > 0:
                if not resume:
                    raise UsageError(f"{record.path}: a record of an evaluation is already "
                                     "there; add --resume to continue it, or remove it to "
                                     "start again")
                record._load()
            if os.fstat(record._fd).st_size == 0:
                record._write([{"record": FORMAT, "version": VERSION, "images": listed,
                                "fingerprint": record.fingerprint}], sync=True)
        except BaseException:
            record.close()
            raise
        return record

    def _load(self) -> None:
        assert self.path is not None
        try:
            data = self.path.read_bytes()
        except OSError as err:
            raise InputFileError(f"{self.path}: cannot read the record "
                                 f"({err.strerror or err})") from None
        good_end, number, session_t = 0, 0, None
        pos = 0
        while pos < len(data):
            end = data.find(b"\n", pos)
            number += 1
            obj = decode_line(data[pos:end]) if end >= 0 else None
            if obj is None:
                rest_has_lines = end >= 0 and any(
                    decode_line(x) is not None for x in data[end + 1:].split(b"\n"))
                if rest_has_lines:
                    raise InputFileError(f"{self.path}:{number}: damaged line inside the "
                                         "record (edited by hand?); it cannot be resumed")
                self.dropped_tail = True  # the last write, cut short: never counted
                break
            if number == 1:
                self._check_header(obj)
            elif "session" in obj:
                if session_t is not None:
                    self.earlier_wall_s.append(session_t)
                session_t = 0.0
                self.sessions += 1
            else:
                entry = _entry(obj, self.listed)
                if entry is None:
                    raise InputFileError(f"{self.path}:{number}: not an image record")
                self.entries.setdefault(entry.index, entry)
                session_t = max(session_t or 0.0, entry.t)
            good_end = end + 1
            pos = end + 1
        if session_t is not None:
            self.earlier_wall_s.append(session_t)
        if good_end == 0 and not (data.startswith(HEADER_START) or not data.strip(b"\0")):
            raise InputFileError(f"{self.path}: not a caffezoo evaluation record")
        if good_end < len(data):  # (0: a header cut short; the file starts again)
            os.ftruncate(self._fd, good_end)
            os.fsync(self._fd)

    def _check_header(self, obj: dict) -> None:
        if obj.get("record") != FORMAT:
            raise InputFileError(f"{self.path}: not a caffezoo evaluation record")
        if obj.get("version") != VERSION:
            raise InputFileError(f"{self.path}: record version {obj.get('version')!r} is not "
                                 f"{VERSION} (written by another caffezoo?)")
        recorded = obj.get("fingerprint")
        if not isinstance(recorded, dict):
            raise InputFileError(f"{self.path}: the record has no fingerprint")
        diff = differences(recorded, self.fingerprint)
        if diff:
            raise InputFileError(f"{self.path}: cannot resume, this run differs from the "
                                 f"record in: {'; '.join(diff)}")

    # -- writing ---------------------------------------------------------------------------

    def start_session(self, executor: str, workers: int) -> None:
        self.sessions += 1
        self.started_here = True
        self._t0 = time.perf_counter()
        self._write([{"session": self.sessions, "executor": executor, "workers": workers,
                      "started": dt.datetime.now().isoformat(timespec="seconds")}], sync=True)

    def elapsed(self) -> float:
        """Seconds since this session started."""
        return time.perf_counter() - self._t0

    def add(self, entries: Iterable[Entry]) -> list[Entry]:
        """Records the entries of images not recorded yet (stamped with this session's
        clock); returns those."""
        t = self.elapsed()
        new = []
        for e in entries:
            if e.index not in self.entries:
                e = Entry(e.index, e.top, e.scores, e.error, t)
                self.entries[e.index] = e
                new.append(e)
        if new:
            self._write([e.to_dict() for e in new])
        return new

    def _write(self, objs: list[Mapping], sync: bool = False) -> None:
        if self._fd is None:
            return
        data = b"".join(encode_line(o) for o in objs)
        try:
            written = os.write(self._fd, data)
            while written < len(data):  # a regular file takes it whole; be safe anyway
                written += os.write(self._fd, data[written:])
            if sync or time.monotonic() - self._last_sync > FSYNC_EVERY_S:
                os.fsync(self._fd)
                self._last_sync = time.monotonic()
        except OSError as err:
            raise InputFileError(f"{self.path}: cannot write the record "
                                 f"({err.strerror or err})") from None

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Record:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
