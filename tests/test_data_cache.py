"""The dataset cache (checksummed, atomic .npz files) and the IDX encoding."""

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest

from sgmcmc_paper.data.cache import atomic_write, load_arrays, save_arrays, stored_checksum
from sgmcmc_paper.data.idx import decode_idx, encode_idx, idx_md5


def test_arrays_round_trip_with_their_checksum(tmp_path):
    arrays = {"x": np.arange(24, dtype=np.uint8).reshape(2, 3, 4), "y": np.array([3, 7])}
    path = tmp_path / "sub" / "set.npz"
    checksum = save_arrays(path, arrays)
    assert checksum == hashlib.sha256(path.read_bytes()).hexdigest() == stored_checksum(path)
    loaded = load_arrays(path)
    assert loaded.keys() == arrays.keys()
    for name, array in arrays.items():
        np.testing.assert_array_equal(loaded[name], array)
        assert loaded[name].dtype == array.dtype


def test_flipped_byte_is_detected_and_never_used(tmp_path, caplog):
    path = tmp_path / "set.npz"
    save_arrays(path, {"x": np.zeros((100, 28, 28), np.uint8)})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the array body: np.load alone would not notice
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert load_arrays(path) is None
    assert "does not match its checksum" in caplog.text


def test_missing_file_or_checksum_means_absent(tmp_path):
    path = tmp_path / "set.npz"
    assert load_arrays(path) is None
    save_arrays(path, {"x": np.ones(3)})
    path.with_name("set.npz.sha256").unlink()
    assert load_arrays(path) is None


def test_interrupted_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")

    def fail_halfway(file):
        file.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, fail_halfway)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["file.bin"]


def test_idx_bytes_have_the_canonical_header():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    data = encode_idx(images)
    assert data[:4] == bytes([0, 0, 8, 3])  # magic 0x00000803 = 2051, as in *-idx3-ubyte
    assert data[4:16] == (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + (4).to_bytes(4, "big")
    assert data[16:] == images.tobytes()
    assert encode_idx(np.array([1, 2], np.int64))[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 2])
    np.testing.assert_array_equal(decode_idx(data), images)
    assert idx_md5(images) == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize(
    "data", [b"", bytes([0, 0, 9, 1, 0, 0, 0, 1, 5]), bytes([0, 0, 8, 1, 0, 0, 0, 3, 5])]
)
def test_malformed_idx_is_refused(data):
    with pytest.raises(ValueError):
        decode_idx(data)


def test_idx_refuses_values_outside_a_byte():
    with pytest.raises(ValueError, match="0..255"):
        encode_idx(np.array([256]))


# ---------------------------------------------------------------------- faults (#25)
LAYOUT = {"x": (np.uint8, (None, 2, 2)), "y": (np.int64, (None,))}
GOOD = {"x": np.zeros((3, 2, 2), np.uint8), "y": np.array([0, 1, 9])}


@pytest.mark.parametrize(
    ("arrays", "problem"),
    [
        ({"images": GOOD["x"], "y": GOOD["y"]}, "arrays ['images', 'y'], expected ['x', 'y']"),
        ({"x": GOOD["x"]}, "arrays ['x'], expected ['x', 'y']"),
        ({**GOOD, "x": GOOD["x"].astype(np.float32)}, "x is float32 (3, 2, 2)"),
        ({**GOOD, "x": np.zeros((3, 4), np.uint8)}, "x is uint8 (3, 4)"),
        ({**GOOD, "y": np.array([0, 1, 10])}, "y holds labels outside 0..9"),
        ({**GOOD, "y": np.array([0, 1])}, "arrays of different lengths [2, 3]"),
    ],
)
def test_a_file_whose_checksum_matches_but_layout_does_not_is_never_used(
    arrays, problem, tmp_path, caplog
):
    path = tmp_path / "set.npz"
    save_arrays(path, arrays)  # a fresh, matching sidecar
    assert load_arrays(path) is not None  # without a layout: the checksum alone
    with caplog.at_level(logging.WARNING):
        assert load_arrays(path, LAYOUT, classes=10) is None
    assert problem in caplog.text and "rebuilding it" in caplog.text
    save_arrays(path, GOOD)
    assert load_arrays(path, LAYOUT, classes=10) is not None


@pytest.mark.parametrize("content", [b"not an npz", b"PK\x03\x04 truncated zip", b""])
def test_a_file_that_is_not_an_npz_but_matches_its_checksum_is_never_used(content, tmp_path):
    path = tmp_path / "set.npz"
    path.write_bytes(content)
    path.with_name("set.npz.sha256").write_text(f"{hashlib.sha256(content).hexdigest()}  x\n")
    assert load_arrays(path, LAYOUT) is None


def test_a_pickled_npz_is_never_loaded(tmp_path):
    path = tmp_path / "set.npz"
    save_arrays(path, {"x": np.array([{"evil": 1}], dtype=object)})
    assert load_arrays(path) is None


@pytest.mark.parametrize("sidecar", ["a folder", b"\xff\xfe binary", b"", b"   "])
def test_an_unreadable_or_empty_sidecar_means_absent(sidecar, tmp_path):
    path = tmp_path / "set.npz"
    save_arrays(path, GOOD)
    side = path.with_name("set.npz.sha256")
    side.unlink()
    if sidecar == "a folder":
        side.mkdir()
    else:
        side.write_bytes(sidecar)
    assert stored_checksum(path) is None and load_arrays(path) is None


def test_a_cache_folder_that_cannot_be_written_is_one_line(tmp_path):
    from sgmcmc_paper.errors import UserError

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for path in (blocker / "sub" / "set.npz", Path("/proc/sgmcmc-data/set.npz")):
        with pytest.raises(UserError) as info:
            save_arrays(path, GOOD)
        message = str(info.value)
        assert "\n" not in message and "cannot create the folder" in message


def test_a_read_only_cache_file_is_one_line_naming_it(tmp_path, monkeypatch):
    from sgmcmc_paper.errors import UserError

    def read_only(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    path = tmp_path / "set.npz"
    with pytest.raises(UserError, match=f"cannot write {path} \\(Read-only file system\\)"):
        save_arrays(path, GOOD)
