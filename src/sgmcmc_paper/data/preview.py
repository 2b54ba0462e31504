"""Preview grids: 100 random images of a dataset in one PNG, to look at what was built."""

from pathlib import Path

import numpy as np
from PIL import Image

from sgmcmc_paper.data.cache import atomic_write


def image_grid(images: np.ndarray, rows: int = 10, cols: int = 10, seed: int = 0) -> np.ndarray:
    """``rows × cols`` images drawn at random without replacement, tiled with 2-pixel gray gaps."""
    rng = np.random.default_rng(seed)
    count = min(rows * cols, len(images))
    chosen = images[np.sort(rng.choice(len(images), size=count, replace=False))]
    height, width = images.shape[1:]
    gap = 2
    grid = np.full((rows * (height + gap) + gap, cols * (width + gap) + gap), 96, np.uint8)
    for k, image in enumerate(chosen):
        top, left = gap + (k // cols) * (height + gap), gap + (k % cols) * (width + gap)
        grid[top : top + height, left : left + width] = image
    return grid


def save_preview(images: np.ndarray, path: Path, seed: int = 0, zoom: int = 3) -> Path:
    """Save :func:`image_grid` of ``images`` as a PNG, enlarged ``zoom`` times; return the path."""
    grid = Image.fromarray(image_grid(images, seed=seed))
    grid = grid.resize((grid.width * zoom, grid.height * zoom), Image.Resampling.NEAREST)
    atomic_write(path, lambda file: grid.save(file, format="PNG"))
    return path
