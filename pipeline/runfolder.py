"""The output folder of a run: that it never overlaps what the user gave as input, that it is the tool's own, and
that one writer at a time works in it.

Every entry point that writes (`augment run`, `stage`, `evaluate`, `generate --run`, `export`, and the Prefect flow
that deployments run) opens its folder once with `open_run`: the overlap check, the ownership check and the lock, in
that order, before anything is written. Inside, `storage.fresh_dir` replaces only folders the tool made."""
from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path
from typing import Iterator

from pipeline import storage
from pipeline.errors import AugmentError

RUN_MARKER = ".augment-run"   # written first into every output folder the tool creates or adopts
LOCK = ".augment.lock"        # the writers' lock, inside the output folder
# What else may sit in an unmarked folder the tool adopts: DVC restores the stage folders (each holds
# storage.STAGE_MARKER) into outputs/ with a .gitignore beside them, but not the run marker, which it does not track.
ADOPTABLE_FILES = (LOCK, ".gitignore")


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop: compare the path as written
        return path.absolute()


def check_output_location(dataset: str | Path, out_dir: str | Path, what: str = "dataset") -> None:
    """Refuse any overlap of the output folder and an input folder (the dataset, an outside synthetic source),
    symbolic links followed: the stages empty their folders inside the output, so an input there (e.g. a previous
    run's synthetic/) would be deleted, and an output inside an input would change it."""
    data, out = _resolve(Path(dataset)), _resolve(Path(out_dir))
    both = f"output folder '{out_dir}' and {what} '{dataset}'"
    if data == out:
        raise AugmentError(f"{both} are the same folder; choose an --out outside the {what}")
    if out.is_relative_to(data):
        raise AugmentError(f"output folder '{out_dir}' is inside the {what} '{dataset}'; choose an --out outside it")
    if data.is_relative_to(out):
        raise AugmentError(f"{what} '{dataset}' is inside the output folder '{out_dir}', whose stage folders are "
                           f"replaced on every run; copy the {what} elsewhere or choose another --out")
    link = _link_across(data, out)
    if link is not None:
        raise AugmentError(f"{both} overlap through the symbolic link '{link}' (to '{_resolve(link)}'); "
                           f"choose an --out that shares no folder with the {what}")


def _link_across(data: Path, out: Path) -> Path | None:
    """A symbolic link in the input that leads into the output folder, or one at the top of the output folder
    (where the stages delete) that leads into the input; None when there is none."""
    def overlaps(link: Path, other: Path) -> bool:
        target = _resolve(link)
        return target == other or target.is_relative_to(other) or other.is_relative_to(target)

    for root, dirs, files in os.walk(data):  # links are listed, not followed: a link loop cannot trap us
        for name in dirs + files:
            path = Path(root) / name
            if path.is_symlink() and overlaps(path, out):
                return path
    if out.is_dir():
        for path in [*out.iterdir(), *(p for d in out.iterdir() if d.is_dir() and not d.is_symlink() for p in d.iterdir())]:
            if path.is_symlink() and overlaps(path, data):
                return path
    return None


def claim(out_dir: str | Path) -> Path:
    """Make out_dir an output folder of the tool's, or check that it is one: a new or empty folder gets the run
    marker; a folder with the marker (or made by the tool's own writes: storage.STAGE_MARKER) is the tool's; a
    folder holding only stage folders the tool made (what `dvc pull` restores) is adopted. Anything else that is not empty is refused, so `--out ~` never touches a home
    folder's own ingest/ or gan/."""
    out = Path(out_dir)
    if out.is_symlink() and not out.exists():
        raise AugmentError(f"output folder '{out}' is a symbolic link that leads nowhere; choose a real folder")
    if out.exists() and not out.is_dir():
        raise AugmentError(f"output folder '{out}' is a file, not a folder; choose another --out")
    marker = out / RUN_MARKER
    if out.is_dir() and not storage.is_plain_file(marker) and not storage.owned(out):
        if marker.is_symlink() or marker.exists():
            raise AugmentError(f"'{marker}' is not a plain file (a link?); this folder was not made by augment")
        foreign = [p.name for p in out.iterdir() if p.name not in ADOPTABLE_FILES and not storage.owned(p)]
        if foreign:
            shown = ", ".join(sorted(foreign)[:5]) + (", ..." if len(foreign) > 5 else "")
            raise AugmentError(f"output folder '{out}' is not empty and was not made by augment (no {RUN_MARKER}; it "
                               f"holds {shown}); choose a new or empty folder, augment only replaces what it made")
    storage.real_dir(out, mark=False)
    if not storage.is_plain_file(marker):
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.write(fd, b"an augment run folder: its stage folders are replaced by the next run written here\n")
        os.close(fd)
    return out


_held: dict[Path, list] = {}   # this process's locks: folder -> [descriptor, depth]
_held_guard = threading.Lock()


@contextlib.contextmanager
def lock(out_dir: str | Path) -> Iterator[Path]:
    """Hold the folder's writer lock while the block runs; a second writer (another process) fails at once with the
    holder's pid. Re-entrant within a process (the flow holds it while its stages, in threads, take it again).
    The lock file is opened without following links and never truncated unless it is a plain file of its own
    (one link): a planted link or hard link cannot make the tool clobber someone's file. An OS lock: released by
    the kernel when the process dies, so a killed run never blocks the next."""
    folder = storage.real_dir(out_dir)
    key = _resolve(folder)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            fd = None
        else:
            fd = _acquire(folder / LOCK)
            _held[key] = [fd, 1]
    try:
        yield folder / LOCK
    finally:
        with _held_guard:
            _held[key][1] -= 1
            if _held[key][1] == 0:
                _release(_held.pop(key)[0])


def _acquire(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o666)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise AugmentError(f"the lock file '{path}' is a symbolic link; augment does not write through links "
                               "(remove it if this is your run folder)") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        raise AugmentError(f"the lock file '{path}' is not a plain file of its own (a FIFO, a device or a hard link to "
                           "another file); augment does not write into it (remove it if this is your run folder)")
    try:
        _os_lock(fd)
    except OSError:
        owner = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise AugmentError(f"output folder '{path.parent}' is in use by another augment command ({owner}); wait for "
                           "it to finish or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}".encode(), 0)
    return fd


def _os_lock(fd: int) -> None:
    """An exclusive, non-blocking lock: flock on POSIX, msvcrt on Windows; raises OSError when it is held."""
    try:
        import fcntl
    except ImportError:  # Windows
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        return
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _release(fd: int) -> None:
    os.close(fd)  # closing the descriptor releases the OS lock


@contextlib.contextmanager
def open_run(out_dir: str | Path, inputs: dict[str, str | Path]) -> Iterator[Path]:
    """What every writer does first: refuse an overlap with any input (name -> folder), claim the folder, lock it."""
    for what, folder in inputs.items():
        check_output_location(folder, out_dir, what)
    with lock(claim(out_dir)):
        yield Path(out_dir)
