"""Writing files so that a failed write is named as one, and never leaves half a file where a whole one was.

A disk that fills mid-write leaves a file cut short; read back later it surfaced as ``JSONDecodeError:
Unterminated string``, which names neither the file nor the cause. Here a file is written beside its
place and renamed over it only once whole (readers see the old file or the new one), a line is appended
whole or not at all, and every failure is a ``WriteFailed`` that says which file and why, with the free
space on its disk.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

MB = 2**20


class WriteFailed(OSError):
    """A file could not be written whole; the message names it, the reason and the free space left."""


def free_space(path: str | os.PathLike) -> str:
    """Free space on the disk that holds ``path`` (or its nearest existing parent), for a message."""
    here = Path(path)
    while not here.exists() and here != here.parent:
        here = here.parent
    try:
        return f"{shutil.disk_usage(here).free / MB:.1f} MB free on its disk"
    except OSError:
        return "free space unknown"


def write_failure(path: str | os.PathLike, error: BaseException, outcome: str = "nothing was replaced") -> WriteFailed:
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    failed = WriteFailed(f"could not write {path}: {reason} ({free_space(path)}); {outcome}")
    failed.errno = getattr(error, "errno", None)
    return failed


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole, or raise WriteFailed and leave ``path`` as it was."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data)
            os.fsync(fd)  # whole on the disk before the rename makes it the file
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise write_failure(path, e) from None
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append ``line`` and a newline whole: a write cut short is cut off again, so the file never ends in
    half a line, and the failure is a WriteFailed."""
    path = Path(path)
    data = (line.rstrip("\n") + "\n").encode("utf-8")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise write_failure(path, e, "the line was not appended") from None
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        _write_all(fd, data)
    except OSError as e:
        try:
            os.ftruncate(fd, start)
        except OSError:
            pass  # what is left is half a line; readers skip a last line with no newline
        raise write_failure(path, e, "the line was not appended") from None
    finally:
        os.close(fd)


def complete_lines(text: str) -> list[str]:
    """The lines of a file written with :func:`append_line`, without a last one that has no newline (a
    write cut short), and without blank ones."""
    lines = text.split("\n")
    return [line for line in lines[:-1] if line.strip()]


def read_json_lines(path: str | os.PathLike) -> list:
    """The records of a JSON-lines file written with :func:`append_line`; a damaged line is named."""
    out = []
    for number, line in enumerate(complete_lines(Path(path).read_text()), 1):
        try:
            out.append(json.loads(line))
        except ValueError:
            raise ValueError(f"{path} line {number} is not a JSON record; the file is damaged") from None
    return out


__all__ = ["WriteFailed", "append_line", "complete_lines", "free_space", "read_json_lines", "write_bytes_atomic",
           "write_failure", "write_text_atomic"]
