"""notMNIST-style letters: A–J rendered from Debian font packages (or a real notMNIST_small).

No package registry ships notMNIST, so the letters are rendered (see
:mod:`sgmcmc_paper.data.letters`) from the font packages listed in
``sgmcmc/resources/debian_fonts.txt``. The cache (``<data>/notmnist_style/``) holds the arrays,
their checksum and ``manifest.json``: every kept font (file, family, style, Debian package and
version), the faces dropped by reason, and the arrays' checksum. The cache is reused while the
package list and renderer are unchanged, even where the fonts are not installed.

If ``$SGMCMC_NOTMNIST_DIR`` points at a real ``notMNIST_small`` folder (subfolders ``A`` .. ``J``
of 28×28 PNGs) that is loaded instead; unreadable files are skipped and counted, as the original
notMNIST code did.
"""

import json
import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sgmcmc_paper import paths
from sgmcmc_paper.data import fonts
from sgmcmc_paper.data.cache import atomic_write_bytes, load_arrays, save_arrays, stored_checksum
from sgmcmc_paper.data.letters import LETTERS, SIDE, font_faces, render_letters
from sgmcmc_paper.data.summary import Summary
from sgmcmc_paper.errors import UserError

log = logging.getLogger(__name__)

ENV_DIR = "SGMCMC_NOTMNIST_DIR"
#: Bump when rendering changes, so that caches made by an older renderer are rebuilt.
RENDERER_VERSION = 1


def notmnist_dir() -> Path:
    return paths.data_dir() / "notmnist_style"


def cache_file() -> Path:
    return notmnist_dir() / "letters.npz"


def manifest_file() -> Path:
    return notmnist_dir() / "manifest.json"


def load_notmnist() -> tuple[np.ndarray, np.ndarray]:
    """notMNIST-style letters ``(x, y)``: uint8 ``(n, 28, 28)`` white on black, int64 0..9 = A..J.

    Reads ``$SGMCMC_NOTMNIST_DIR`` if set, else the rendered set (rendered on first use; raises
    UserError naming the apt-get command when the font packages are missing).
    """
    if os.environ.get(ENV_DIR):
        x, y, _ = load_png_folder(Path(os.environ[ENV_DIR]))
        return x, y
    arrays = load_cached() or build_cache(progress=False)
    return arrays["x"], arrays["y"]


#: What the cache holds (a file of another layout is rebuilt, even when its checksum matches).
LAYOUT = {"x": (np.uint8, (None, SIDE, SIDE)), "y": (np.int64, (None,))}
#: The manifest's fields that :func:`prepare` reports, with their JSON types.
MANIFEST_FIELDS = {
    "images": int,
    "distinct_fonts": int,
    "packages_contributing": int,
    "sha256": str,
}


def read_manifest() -> dict | None:
    """``manifest.json`` when it is a JSON object holding :data:`MANIFEST_FIELDS`, else None
    (missing, unreadable, truncated or altered: the cache is then rebuilt)."""
    try:
        manifest = json.loads(manifest_file().read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or not all(
        isinstance(manifest.get(name), kind) and not isinstance(manifest.get(name), bool)
        for name, kind in MANIFEST_FIELDS.items()
    ):
        return None
    return manifest


def _is_current(manifest: dict | None) -> bool:
    return (
        manifest is not None
        and manifest.get("renderer_version") == RENDERER_VERSION
        and manifest.get("packages_requested") == fonts.font_packages()
    )


def load_cached() -> dict[str, np.ndarray] | None:
    """The cached arrays if they match their checksum, layout, manifest (checksum and image
    count) and the current package list."""
    manifest = read_manifest()
    if not _is_current(manifest):
        return None
    arrays = load_arrays(cache_file(), LAYOUT, classes=len(LETTERS))
    if arrays is None or stored_checksum(cache_file()) != manifest["sha256"]:
        return None
    if len(arrays["y"]) != manifest["images"]:
        log.warning(
            "%s does not hold the %d images its manifest lists", cache_file(), manifest["images"]
        )
        return None
    return arrays


def build_cache(progress: bool = True) -> dict[str, np.ndarray]:
    """Render the letters from the installed font packages, cache them and write the manifest."""
    versions = fonts.require_installed()
    faces = font_faces(fonts.package_font_files(versions))
    letters = render_letters(faces, progress=progress)
    if not letters.fonts:
        raise UserError(
            f"no installed font could render A–J; reinstall the fonts: `{fonts.install_command()}`"
        )
    arrays = {"x": letters.images, "y": letters.labels}
    checksum = save_arrays(cache_file(), arrays)
    manifest = {
        "description": "notMNIST-style letters A-J rendered from Debian font packages",
        "renderer_version": RENDERER_VERSION,
        "images": int(len(letters.labels)),
        "distinct_fonts": len(letters.fonts),
        "packages_requested": fonts.font_packages(),
        "packages": {name: versions[name] for name in sorted(versions)},
        "packages_contributing": len({font["package"] for font in letters.fonts}),
        "faces_examined": len(faces),
        "faces_dropped": dict(sorted(letters.dropped.items())),
        "sha256": checksum,
        "fonts": letters.fonts,
    }
    atomic_write_bytes(manifest_file(), json.dumps(manifest, indent=1).encode())
    return arrays


def load_png_folder(root: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """``(x, y, skipped)`` from a notMNIST folder: subfolders A..J of 28×28 grayscale PNGs.

    Files that cannot be read as a 28×28 image are skipped and counted (``skipped``).
    """
    missing = [letter for letter in LETTERS if not (root / letter).is_dir()]
    if missing:
        raise UserError(
            f"{ENV_DIR}={root} has no folder(s) {', '.join(missing)} (expected notMNIST_small "
            f"with subfolders A..J of PNGs); fix the path or unset {ENV_DIR}"
        )
    images, labels, skipped = [], [], 0
    for label, letter in enumerate(LETTERS):
        for file in sorted((root / letter).glob("*.png")):
            try:
                with Image.open(file) as image:
                    pixels = np.asarray(image.convert("L"))
            except (OSError, UnidentifiedImageError, ValueError):
                skipped += 1
                continue
            if pixels.shape != (SIDE, SIDE):
                skipped += 1
                continue
            images.append(pixels)
            labels.append(label)
    if skipped:
        log.warning("skipped %d unreadable file(s) in %s", skipped, root)
    if not images:
        raise UserError(f"{ENV_DIR}={root} holds no readable 28x28 PNGs; fix the path or unset it")
    return np.stack(images), np.asarray(labels, dtype=np.int64), skipped


def prepare(progress: bool = True) -> Summary:
    """Build (if needed) and verify the letters; describe them."""
    if os.environ.get(ENV_DIR):
        root = Path(os.environ[ENV_DIR])
        x, y, skipped = load_png_folder(root)
        return Summary(
            name="notMNIST",
            source=f"notMNIST_small PNG folder (${ENV_DIR})",
            counts=f"{len(y):,} images ({_per_letter(y)}); {skipped} unreadable file(s) skipped",
            checksum="none (a user-supplied folder)",
            path=root,
        )
    arrays = load_cached() or build_cache(progress=progress)
    manifest = read_manifest()
    if manifest is None:  # written by build_cache a moment ago: only a concurrent writer
        raise UserError(f"{manifest_file()} is unreadable; run `sgmcmc data --only notmnist` again")
    return Summary(
        name="notMNIST-style letters",
        source=f"rendered from Debian font packages listed in {fonts.PACKAGE_LIST.name}",
        counts=(
            f"{len(arrays['y']):,} images ({_per_letter(arrays['y'])}) from "
            f"{manifest['distinct_fonts']:,} distinct fonts in "
            f"{manifest['packages_contributing']} packages"
        ),
        checksum=f"sha256 {manifest['sha256'][:16]}… matches; manifest {manifest_file().name}",
        path=cache_file(),
    )


def _per_letter(labels: np.ndarray) -> str:
    counts = np.bincount(labels, minlength=len(LETTERS))
    if (counts == counts[0]).all():
        return f"{counts[0]:,} of each letter A-J"
    return ", ".join(f"{letter} {count:,}" for letter, count in zip(LETTERS, counts, strict=True))
