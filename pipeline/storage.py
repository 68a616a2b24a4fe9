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
    real_dir(path.parent)
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
    """A JSON file the tool wrote; a damaged one (a run folder that travelled, a tampered file) is a one-line error."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise AugmentError(f"'{path}' is damaged: not valid JSON ({error}); re-run the stage that writes it") from None


def read_json_object(path: str | Path, keys: tuple[str, ...] = ()) -> dict:
    """read_json for a file that must hold a mapping with (at least) `keys`."""
    data = read_json(path)
    missing = [key for key in keys if not isinstance(data, dict) or key not in data]
    if not isinstance(data, dict) or missing:
        raise AugmentError(f"'{path}' is damaged: {'it is not a JSON object' if not isinstance(data, dict) else f'it lacks {missing}'}; "
                           "re-run the stage that writes it")
    return data


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


STAGE_MARKER = ".augment-stage"  # written into every folder fresh_dir makes: only such folders are ever emptied


def owned(path: str | Path) -> bool:
    """Whether `path` is a real folder the tool made (it holds STAGE_MARKER as a plain file)."""
    path = Path(path)
    return not path.is_symlink() and path.is_dir() and is_plain_file(path / STAGE_MARKER)


def is_plain_file(path: Path) -> bool:
    """A regular file that is not a symbolic link (lstat: the link itself is looked at, never its target)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def load_weights(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str | Path) -> None:
    """module.load_state_dict(tensors), where a file whose tensors do not fit the module (tampered, or from other
    settings) is a one-line error naming it."""
    try:
        module.load_state_dict(tensors)
    except (RuntimeError, ValueError, KeyError) as error:
        raise AugmentError(f"'{source}' does not fit the network its settings describe ({str(error).splitlines()[0]}); "
                           "delete it and run that stage again") from None


def fresh_dir(path: str | Path) -> Path:
    """Empty (or create) a stage's output folder so stale files from an older run never mix in. Only a folder the
    tool made (it holds STAGE_MARKER) or an empty one is emptied; a link, a file or a folder of someone else's
    is refused, so a mistaken --out never costs a user a folder of theirs."""
    path = Path(path)
    if path.is_symlink():
        raise AugmentError(f"refusing to replace '{path}': it is a symbolic link, and augment only replaces folders it made")
    if path.exists():
        if not path.is_dir():
            raise AugmentError(f"refusing to replace '{path}': it is a file, not a folder augment made; move it away")
        if any(path.iterdir()) and not owned(path):
            raise AugmentError(f"refusing to delete '{path}': augment did not make it (it has no {STAGE_MARKER} file); "
                               "move it away or choose another output folder")
        shutil.rmtree(path)  # removes links inside, never what they point to
    real_dir(path)
    _mark(path)  # a folder that existed empty is the tool's from now on too
    return path


def fresh_subdir(parent: str | Path, name: str) -> Path:
    """Empty (or create) parent/name, one unit's part of a stage folder (a class's images while classes are made
    apart). The parent must be the tool's (it holds STAGE_MARKER; created marked when missing), so whatever is in
    it is the tool's to replace; the part itself stays unmarked, as the same folder is when the whole stage runs."""
    parent = Path(parent)
    if parent.is_dir() and not parent.is_symlink() and any(parent.iterdir()) and not owned(parent):
        raise AugmentError(f"refusing to write into '{parent}': augment did not make it (it has no {STAGE_MARKER} "
                           "file); move it away or choose another output folder")
    real_dir(parent)
    _mark(parent)
    child = parent / safe_name(name, "folder name")
    if child.is_symlink() or (child.exists() and not child.is_dir()):
        child.unlink()  # a link is removed, never followed
    elif child.exists():
        shutil.rmtree(child)
    child.mkdir()
    return child


def real_dir(path: str | Path, mark: bool = True) -> Path:
    """Create `path` (and its parents) if missing, each new folder marked as the tool's (STAGE_MARKER) unless
    mark is False; refuse when `path` is a symbolic link or not a folder, so nothing is ever written through a
    link planted in a run folder."""
    path = Path(path)
    if path.is_symlink():
        raise AugmentError(f"refusing to write into '{path}': it is a symbolic link (augment writes only into real folders)")
    if path.is_dir():
        return path
    if path.exists():
        raise AugmentError(f"cannot write into '{path}': it is a file, not a folder")
    created = [p for p in (path, *path.parents) if not p.exists() and not p.is_symlink()]
    path.mkdir(parents=True, exist_ok=True)
    for folder in created if mark else ():
        _mark(folder)
    return path


def _mark(folder: Path) -> None:
    try:
        fd = os.open(folder / STAGE_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return
    os.write(fd, b"made by augment: this folder is replaced on every run\n")
    os.close(fd)


def refuse_links(folder: str | Path) -> None:
    """Fail when anything inside `folder` (or folder itself) is a symbolic link: checked before the tool resumes
    work in a folder it did not just empty, since a run folder may have travelled or been tampered with."""
    folder = Path(folder)
    for root, dirs, files in os.walk(folder):  # links are listed, never followed
        for name in dirs + files:
            if (Path(root) / name).is_symlink():
                raise AugmentError(f"'{Path(root) / name}' is a symbolic link; augment does not resume in a folder with "
                                   "links (delete the folder to start it afresh)")
    if folder.is_symlink():
        raise AugmentError(f"'{folder}' is a symbolic link; augment does not write through links")


def safe_name(name: object, what: str = "class name") -> str:
    """A name used as one path part (a class folder): refused unless it is a plain, visible, single component, so a
    name read back from a run folder can never reach outside it ('../x', '/etc', 'a/b')."""
    if (not isinstance(name, str) or name in ("", ".", "..") or name.startswith(".") or any(c in name for c in "/\\\0")
            or len(name.encode("utf-8", "surrogateescape")) > 255):
        raise AugmentError(f"{what} {name!r} cannot be a folder name (empty, hidden, '..', a path separator or too long)")
    return name


def safe_names(names, what: str = "class name") -> list[str]:
    """safe_name of each; also refuses duplicates."""
    result = [safe_name(str(n) if isinstance(n, np.str_) else n, what) for n in names]
    if len(set(result)) != len(result):
        raise AugmentError(f"the {what}s {result} repeat a name")
    return result


def stage_dirs(out_dir: str | Path) -> dict[str, Path]:
    """The fixed layout of an output folder."""
    out = Path(out_dir)
    return {"ingest": out / "ingest", "gan": out / "gan", "synthetic": out / "synthetic", "sources": out / "sources",
            "evaluation": out / "evaluation"}


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file (its JSON header), read without loading tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception as error:
        raise AugmentError(f"checkpoint '{path}' is not a valid safetensors file ({error}); delete it and retrain") from None


def read_csv_rows(path: str | Path) -> list[list[Any]]:
    """Rows of a numeric CSV written by write_csv, header dropped, numbers parsed."""
    path = Path(path)
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        return [[float(v) if "." in v or "e" in v else int(v) for v in row] for row in rows]
    except (ValueError, UnicodeDecodeError, csv.Error) as error:
        raise AugmentError(f"'{path}' is damaged ({error}); re-run the stage that writes it") from None


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
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as error:  # a pickled array (ValueError), a damaged zip (BadZipFile, EOFError, OSError)
        raise AugmentError(f"'{path}' is damaged or not an augment array file ({error}); re-run the ingest stage") from None
    if "classes" in arrays:
        safe_names(arrays["classes"].tolist())
    return arrays


def load_array(path: str | Path) -> np.ndarray:
    """One .npy array (save_array's), never unpickled; a damaged file is a one-line error."""
    try:
        return np.load(path, allow_pickle=False)
    except Exception as error:
        raise AugmentError(f"'{path}' is damaged or not an augment array file ({error}); re-run the stage that writes it") from None


def inside(folder: str | Path, relative: str) -> Path:
    """folder / relative, refusing names that would escape folder (absolute paths, '..', symbolic links)."""
    base = Path(folder).resolve()
    target = base / relative
    if Path(relative).is_absolute() or ".." in Path(relative).parts or any(
            p.is_symlink() for p in [target, *target.parents] if p.is_relative_to(base) and p != base):
        raise AugmentError(f"refusing path '{relative}' from a manifest: it points outside '{folder}' or through a link")
    return target


def read_plain_bytes(path: str | Path) -> bytes | None:
    """The bytes of a regular file opened without following a link (None when it is a link, a FIFO, a device or
    missing): what the report embeds comes only from files the run itself holds."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        return handle.read()
