"""Checksummed, atomically written ``.npz`` files: the dataset cache.

Every array file ``X.npz`` has a sidecar ``X.npz.sha256`` holding the SHA-256 of its bytes. Both
are written through a temporary file and :func:`os.replace`, the sidecar last, so an interrupted
write leaves either the old pair or a pair whose checksum does not match. A file whose checksum
does not match is never used: :func:`load_arrays` reports it as absent and the caller rebuilds it.
Arrays are stored uncompressed (reading MNIST takes a fraction of a second) and read with
``allow_pickle=False``.
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

log = logging.getLogger(__name__)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` by calling ``write(file)`` on a temporary file, then renaming it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates files readable by their owner only
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    except (FileNotFoundError, IndexError):
        return None


def load_arrays(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays in ``path`` if it exists and matches its recorded checksum, else None.

    A mismatch (flipped bytes, a truncated file, a missing sidecar) is logged, and the caller
    rebuilds the file.
    """
    if not path.exists():
        return None
    expected = stored_checksum(path)
    data = path.read_bytes()
    if expected is None or hashlib.sha256(data).hexdigest() != expected:
        log.warning("cache file %s does not match its checksum; rebuilding it", path)
        return None
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}
