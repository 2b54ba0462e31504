"""Checksummed, atomically written ``.npz`` files: the dataset cache.

Every array file ``X.npz`` has a sidecar ``X.npz.sha256`` holding the SHA-256 of its bytes. Both
are written through a temporary file and :func:`os.replace`, the sidecar last, so an interrupted
write leaves either the old pair or a pair whose checksum does not match. A file whose checksum
does not match is never used: :func:`load_arrays` reports it as absent and the caller rebuilds it.
So is one whose checksum matches but whose contents do not (not an npz, or arrays of another
name, dtype or shape than the dataset's :data:`Layout`: a file written by hand with a fresh
sidecar). Arrays are stored uncompressed (reading MNIST takes a fraction of a second) and read
with ``allow_pickle=False``. A cache folder that cannot be written is a one-line
:class:`~sgmcmc_paper.errors.UserError` naming it.
"""

import hashlib
import io
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from sgmcmc_paper.errors import UserError
from sgmcmc_paper.paths import ensure_dir, unwritable_fix

log = logging.getLogger(__name__)

#: What a cache file must hold: ``{name: (dtype, shape)}``, ``None`` in a shape for any size.
Layout = dict[str, tuple[np.dtype, tuple[int | None, ...]]]


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` by calling ``write(file)`` on a temporary file, then renaming it; a
    folder that cannot be written is a one-line :class:`UserError` naming ``path``."""
    path = Path(path)
    ensure_dir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise _unwritable(path, exc) from None
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates files readable by their owner only
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise _unwritable(path, exc) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _unwritable(path: Path, exc: OSError) -> UserError:
    return UserError(f"cannot write {path} ({exc.strerror or exc}); {unwritable_fix(path)}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda file: file.write(data))


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> str:
    """Store ``arrays`` in ``path`` (compressed ``.npz``: small enough to carry) and its sha256."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = buffer.getvalue()
    checksum = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(path, data)
    atomic_write_bytes(_sidecar(path), f"{checksum}  {path.name}\n".encode())
    return checksum


def stored_checksum(path: Path) -> str | None:
    """The checksum recorded beside ``path``, or None when there is none."""
    try:
        return _sidecar(path).read_text().split()[0]
    except (OSError, UnicodeDecodeError, IndexError):  # missing, unreadable, empty, binary
        return None


def load_arrays(
    path: Path, layout: Layout | None = None, classes: int | None = None
) -> dict[str, np.ndarray] | None:
    """The arrays in ``path`` if it exists, matches its recorded checksum and holds what
    ``layout`` names (exactly those arrays, of those dtypes and shapes; with ``classes``, every
    integer label array within ``[0, classes)``), else None.

    A mismatch (flipped bytes, a truncated file, a missing sidecar, a file that is not an npz
    or holds other arrays) is logged, and the caller rebuilds the file.
    """
    if not path.exists():
        return None
    expected = stored_checksum(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        log.warning("cache file %s is unreadable (%s); rebuilding it", path, exc.strerror or exc)
        return None
    if expected is None or hashlib.sha256(data).hexdigest() != expected:
        log.warning("cache file %s does not match its checksum; rebuilding it", path)
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except Exception as exc:  # not an npz, pickled objects, a bad member: never used
        log.warning("cache file %s is not a readable npz (%s); rebuilding it", path, exc)
        return None
    problem = layout_problem(arrays, layout, classes) if layout is not None else None
    if problem is not None:
        log.warning(
            "cache file %s does not hold the expected arrays (%s); rebuilding it", path, problem
        )
        return None
    return arrays


def layout_problem(
    arrays: dict[str, np.ndarray], layout: Layout, classes: int | None = None
) -> str | None:
    """What in ``arrays`` differs from ``layout`` (and the label range), or None."""
    if set(arrays) != set(layout):
        return f"arrays {sorted(arrays)}, expected {sorted(layout)}"
    for name, (dtype, shape) in layout.items():
        array = arrays[name]
        fits = len(array.shape) == len(shape) and all(
            want is None or want == got for want, got in zip(shape, array.shape, strict=True)
        )
        if array.dtype != np.dtype(dtype) or not fits:
            return f"{name} is {array.dtype} {array.shape}, expected {np.dtype(dtype)} {shape}"
        if classes is not None and array.dtype.kind in "iu" and array.ndim == 1 and array.size:
            if array.min() < 0 or array.max() >= classes:
                return f"{name} holds labels outside 0..{classes - 1}"
    free = {len(arrays[name]) for name, (_, shape) in layout.items() if shape and shape[0] is None}
    if len(free) > 1:  # arrays of any length go together (images and their labels)
        return f"arrays of different lengths {sorted(free)}"
    return None
