"""Reading the files Switchboard is pointed at (the catalogue, the prompt, datasets) without hanging on them
and without reading more than a set amount.

Only regular files are read. A named pipe opened for reading blocks until someone writes to it: one put where
the catalogue was froze every caller during a hot reload. So a file is checked with `os.stat`, opened with
O_NONBLOCK (a pipe then opens at once instead of waiting for a writer) and checked again with `fstat` on what
was actually opened (the path may have been swapped in between); devices and directories are refused too.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

CHUNK = 1 << 16
# The most one dataset line (or one .json call file) may hold: one webhook body and a few fields. 16 times the
# service's default body limit (SWITCHBOARD_MAX_BODY_BYTES, 1 MiB); recorded lines hold a window of a few KB.
DATASET_LINE_BYTES = 16 * 1024 * 1024


class FileProblem(Exception):
    """A file cannot be read as asked; the message names it and says why."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: Path) -> int:
    """A file descriptor for reading `path`, which must be a regular file. Raises FileNotFoundError when it
    does not exist, FileProblem when it is anything else, OSError when it cannot be opened."""
    before = os.stat(path)
    if not stat.S_ISREG(before.st_mode):
        raise FileProblem(f"{path}: is {_kind(before.st_mode)}, not a regular file")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # swapped for something else after the stat above
            raise FileProblem(f"{path}: is {_kind(mode)}, not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path, limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes. Raises FileNotFoundError, FileProblem or OSError."""
    fd = open_regular(path)
    try:
        before = os.fstat(fd)
        if before.st_size > limit:
            raise FileProblem(f"{path}: {before.st_size:,} bytes is over the limit of {limit:,} bytes")
        chunks, total = [], 0
        while chunk := os.read(fd, min(CHUNK, limit + 1 - total)):  # it may grow while read: stop past the limit
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise FileProblem(f"{path}: over the limit of {limit:,} bytes")
        after = os.fstat(fd)
        # A file rewritten in place while it was read can yield the start of one version and the end of the next:
        # valid JSON that nobody wrote (seen under chaos.py's reload-storm). Refuse it; the next reload reads it whole.
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or total != after.st_size:
            raise FileProblem(f"{path}: changed while it was being read; replace it atomically (write a new file, "
                              "then rename it over the old one), or reload again")
        return b"".join(chunks)
    finally:
        os.close(fd)


def lines(path: Path, limit: int) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, whether it ended with a line break) for each line that is not blank, reading at
    most `limit` bytes of any line. A line without its line break can only be the last one: a writer that
    was cut off part-way, or a file that simply does not end with one; the caller decides which by parsing it.
    Raises FileNotFoundError, FileProblem (a line over the limit, or not UTF-8) or OSError."""
    fd = open_regular(path)
    with os.fdopen(fd, "rb") as f:
        n = 0
        while raw := f.readline(limit + 1):
            n += 1
            complete = raw.endswith(b"\n")
            if len(raw) > limit and not complete:
                raise FileProblem(f"{path}:{n}: the line is longer than {limit:,} bytes, the most one line may hold "
                                  "(not read further)")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise FileProblem(f"{path}:{n}: not UTF-8 text (byte {exc.start + 1} of the line)") from None
            if text.strip():
                yield n, text, complete
