"""The IDX format of MNIST and Fashion-MNIST (LeCun's ``*-idx3-ubyte`` files), unsigned bytes only.

A file is a big-endian header — two zero bytes, the type code ``0x08`` (unsigned byte), the
number of dimensions — followed by one big-endian uint32 per dimension and the data in C order.
The published checksums of these datasets are md5s of these uncompressed bytes.
"""

import hashlib
import struct

import numpy as np

_UBYTE = 0x08


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of an array of values 0..255 (images ``(n, 28, 28)``, labels ``(n,)``)."""
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError("IDX unsigned-byte arrays hold values 0..255")
    header = struct.pack(f">HBB{array.ndim}I", 0, _UBYTE, array.ndim, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def decode_idx(data: bytes) -> np.ndarray:
    """The uint8 array held in IDX bytes; ValueError if they are not an unsigned-byte IDX file."""
    if len(data) < 4:
        raise ValueError("too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code != _UBYTE or ndim == 0:
        raise ValueError("not an unsigned-byte IDX file")
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)):
        raise ValueError(f"IDX body holds {len(body)} bytes, the header says shape {shape}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def idx_md5(array: np.ndarray) -> str:
    """The md5 of ``array``'s IDX bytes: the published checksum of the uncompressed file."""
    return hashlib.md5(encode_idx(array)).hexdigest()
