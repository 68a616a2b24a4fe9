"""Atomic file writes, safetensors checkpoints and small JSON/CSV helpers shared by the stages."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import secrets
import shutil
import stat
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pipeline.errors import AugmentError


@contextlib.contextmanager
def atomic_path(path: str | Path, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.
    The file gets the mode a plain open() would give it: an existing file's own mode, else 0666 less the umask.
    durable: flush the file to disk before the rename and the folder's entry after it, so a power loss leaves
    the old file or the new one, never an empty or torn one (off for bulk files the caller syncs at once)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path, mode = _create_temp(path)
    try:
        yield tmp_path
        os.chmod(tmp_path, mode)  # again: some writers (safetensors) replace the file they are given
        if durable:
            _fsync(tmp_path)
        os.replace(tmp_path, path)
        if durable:
            _fsync(path.parent)
    finally:
        tmp_path.unlink(missing_ok=True)


def _create_temp(path: Path) -> tuple[Path, int]:
    """A new, empty temp file beside path (O_EXCL: never an existing file), created the way open() creates one,
    and the mode path should end with. mkstemp is not used: it makes every file 0600, which a worker in a
    container or a web server cannot read."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        mode = None
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the kernel applies the umask
        except FileExistsError:
            continue
        if mode is None:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
        os.close(fd)
        return tmp, mode


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk (fsync works on a read-only descriptor on POSIX)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_to_disk() -> None:
    """Flush every written file to disk at once: one call after many files written with durable=False, before the
    manifest that lists them, so the manifest never names an image a power loss could have emptied."""
    os.sync()


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete temporary files a killed run left behind (atomic_path's names); return how many."""
    stale = list(Path(folder).rglob(".*.tmp"))
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_png(path: str | Path, pixels: np.ndarray, compress_level: int | None = 1) -> None:
    """An H x W x C uint8 image (C = 1 or 3) as PNG, atomically but not flushed: bulk image writers sync once
    (sync_to_disk) before their manifest. compress_level None: Pillow's default."""
    from PIL import Image

    image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
    options = {} if compress_level is None else {"compress_level": compress_level}
    with atomic_path(path, durable=False) as tmp:
        image.save(tmp, format="PNG", **options)


def write_json(path: str | Path, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_csv(path: str | Path, header: list[str], rows: list[list[Any]]) -> Path:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return Path(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> Path:
    """Write a safetensors file atomically (tensors made contiguous and moved to CPU)."""
    flat = {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(flat, str(tmp), metadata=metadata)
    return Path(path)


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file; a missing or foreign file is a user error, never unpickled."""
    path = Path(path)
    if not path.is_file():
        raise AugmentError(f"checkpoint '{path}' does not exist; run the train stage first")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises several types for corrupt headers
        raise AugmentError(f"checkpoint '{path}' is not a valid safetensors file ({error}); delete it and retrain") from None


def fresh_dir(path: str | Path) -> Path:
    """Empty (or create) a stage's output folder so stale files from an older run never mix in."""
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def stage_dirs(out_dir: str | Path) -> dict[str, Path]:
    """The fixed layout of an output folder."""
    out = Path(out_dir)
    return {"ingest": out / "ingest", "gan": out / "gan", "synthetic": out / "synthetic", "evaluation": out / "evaluation"}


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (its JSON header), read without loading tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as error:
        raise AugmentError(f"checkpoint '{path}' is not a valid safetensors file ({error}); delete it and retrain") from None


def read_csv_rows(path: str | Path) -> list[list[Any]]:
    """Rows of a CSV written by write_csv, header dropped, numbers parsed."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    return [[float(v) if "." in v or "e" in v else int(v) for v in row] for row in rows]


def save_arrays(folder: str | Path, **arrays: np.ndarray) -> Path:
    """Write the ingest cache folder/arrays.npz atomically (uncompressed: it loads in milliseconds)."""
    path = Path(folder) / "arrays.npz"
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return path


def save_array(path: str | Path, array: np.ndarray) -> Path:
    """One array as .npy, atomically (read back with np.load(path, allow_pickle=False))."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)
    return Path(path)


def load_arrays(folder: str | Path) -> dict[str, np.ndarray]:
    """Read the ingest cache (no pickle: class names are stored as a unicode array)."""
    path = Path(folder) / "arrays.npz"
    if not path.is_file():
        raise AugmentError(f"'{path}' does not exist; run the ingest stage first")
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@contextlib.contextmanager
def output_lock(out_dir: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on an output folder for the length of a run; a second run there fails at once.
    The lock is an OS file lock (released by the kernel if the process dies), so a killed run never blocks."""
    import fcntl

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".augment.lock"
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise AugmentError(f"output folder '{folder}' is in use by another augment run ({owner}); "
                           "wait for it to finish or choose another --out") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    try:
        yield path
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def inside(folder: str | Path, relative: str) -> Path:
    """folder / relative, refusing names that would escape folder (absolute paths, '..')."""
    base = Path(folder).resolve()
    target = (base / relative).resolve()
    if Path(relative).is_absolute() or not target.is_relative_to(base):
        raise AugmentError(f"refusing path '{relative}' from a manifest: it points outside '{folder}'")
    return target
