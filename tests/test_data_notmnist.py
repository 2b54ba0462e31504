"""notMNIST-style letters: the renderer (on matplotlib's fonts and synthetic ones), the cache,
the real-folder loader, and the full Debian set when its fonts are installed."""

import json
import shutil
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from fontTools.fontBuilder import FontBuilder
from fontTools.pens.ttGlyphPen import TTGlyphPen
from PIL import Image

from sgmcmc_paper.data import fonts, letters, notmnist
from sgmcmc_paper.data.cache import load_arrays
from sgmcmc_paper.data.letters import LETTERS, SIDE, faces_in, render_letters
from sgmcmc_paper.errors import UserError

MPL_FONTS = sorted((Path(matplotlib.get_data_path()) / "fonts" / "ttf").glob("*.ttf"))


def _mpl_faces(paths=MPL_FONTS):
    return faces_in(paths, "matplotlib", matplotlib.__version__)


@pytest.fixture(scope="module")
def mpl_letters():
    return render_letters(_mpl_faces())


def _build_font(path: Path, widths: dict[str, int] | None) -> Path:
    """A TrueType font mapping A..J to rectangles ``widths[letter]`` units wide and 700 tall
    (1000 units per em), or to empty glyphs when ``widths`` is None."""
    order = [".notdef", *LETTERS]
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(order)
    builder.setupCharacterMap({ord(letter): letter for letter in LETTERS})
    glyphs = {}
    for name in order:
        pen = TTGlyphPen(None)
        if widths and name in widths:
            for point in [(0, 0), (0, 700), (widths[name], 700), (widths[name], 0)]:
                (pen.lineTo if point != (0, 0) else pen.moveTo)(point)
            pen.closePath()
        glyphs[name] = pen.glyph()
    builder.setupGlyf(glyphs)
    builder.setupHorizontalMetrics({name: (1000, 0) for name in order})
    builder.setupHorizontalHeader(ascent=800, descent=-200)
    builder.setupNameTable({"familyName": "Boxes", "styleName": "Regular"})
    builder.setupOS2()
    builder.setupPost()
    builder.save(str(path))
    return path


def _ink_box(image: np.ndarray) -> tuple[int, int, int, int]:
    rows, cols = np.nonzero(image > 0)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_matplotlib_fonts_give_balanced_28x28_white_on_black_letters(mpl_letters):
    x, y, kept = mpl_letters.images, mpl_letters.labels, mpl_letters.fonts
    assert x.dtype == np.uint8 and x.shape == (10 * len(kept), SIDE, SIDE)
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [len(kept)] * 10
    assert len(kept) >= 15  # the DejaVu and STIX text faces, Computer Modern ...
    families = {font["family"] for font in kept}
    assert {"DejaVu Sans", "DejaVu Serif", "DejaVu Sans Mono", "STIXGeneral"} <= families
    assert all(font["package"] == "matplotlib" and font["style"] for font in kept)
    # white glyphs on black: the frame's border is mostly background, every glyph has ink
    assert (x.reshape(len(x), -1).max(axis=1) == 255).mean() > 0.9
    assert np.median(x) == 0


def test_each_glyph_fills_the_frame_along_its_longer_side_and_is_centred(mpl_letters):
    for image in mpl_letters.images:
        top, bottom, left, right = _ink_box(image)
        assert max(bottom - top, right - left) >= SIDE - 1  # Lanczos may fade an edge row
        assert abs(top - (SIDE - bottom)) <= 2 and abs(left - (SIDE - right)) <= 2


def test_fonts_without_the_letters_are_dropped(mpl_letters):
    kept = {Path(font["file"]).name for font in mpl_letters.fonts}
    assert "DejaVuSansDisplay.ttf" not in kept  # its character map has no A-J
    assert not any(name.startswith("STIXSiz") for name in kept)
    assert mpl_letters.dropped["no A-J in character map"] >= 3


def test_duplicates_and_unreadable_files_are_dropped(tmp_path):
    copy = shutil.copy(MPL_FONTS[0], tmp_path / "copy-of-first.ttf")
    garbage = tmp_path / "garbage.ttf"
    garbage.write_bytes(b"not a font at all" * 10)
    rendered = render_letters(_mpl_faces([MPL_FONTS[0], Path(copy), garbage]))
    assert len(rendered.fonts) == 1
    assert rendered.dropped == {"duplicate of a kept font": 1, "unreadable": 1}


def test_aspect_ratio_is_kept_when_scaling(tmp_path):
    widths = {letter: 100 + 50 * k for k, letter in enumerate(LETTERS)}  # all narrower than 700
    rendered = render_letters(_mpl_faces([_build_font(tmp_path / "boxes.ttf", widths)]))
    assert len(rendered.fonts) == 1
    for letter, image in zip(LETTERS, rendered.images, strict=True):
        top, bottom, left, right = _ink_box(image)
        assert bottom - top == SIDE
        # width = 28 * w / 700 up to rounding at 64 px per em and the Lanczos fringe
        assert abs((right - left) - SIDE * widths[letter] / 700) <= 1.5
        assert image[SIDE // 2, SIDE // 2] >= 250  # a solid box stays solid (up to resampling)


def test_blank_or_identical_glyphs_drop_the_font(tmp_path):
    blank = _build_font(tmp_path / "blank.ttf", None)
    same = _build_font(tmp_path / "same.ttf", dict.fromkeys(LETTERS, 400))
    rendered = render_letters(_mpl_faces([blank, same]))
    assert rendered.fonts == []
    assert rendered.dropped == {"blank glyph": 1, "identical glyphs": 1}


@pytest.fixture
def fake_packages(tmp_path, monkeypatch):
    """A package list naming one fake package that 'installs' matplotlib's fonts."""
    listing = tmp_path / "debian_fonts.txt"
    listing.write_text("# test list\nfonts-fake  # matplotlib's fonts\n")
    monkeypatch.setattr(fonts, "PACKAGE_LIST", listing)
    monkeypatch.setattr(fonts, "installed_versions", lambda names: {"fonts-fake": "1.0"})
    monkeypatch.setattr(
        fonts,
        "package_font_files",
        lambda versions: [fonts.FontFile(path, "fonts-fake", "1.0") for path in MPL_FONTS],
    )
    monkeypatch.setenv("SGMCMC_DATA", str(tmp_path / "data"))
    monkeypatch.delenv(notmnist.ENV_DIR, raising=False)
    return listing


def test_cache_has_manifest_and_checksum_and_is_reused(fake_packages, monkeypatch):
    x, y = notmnist.load_notmnist()
    manifest = json.loads(notmnist.manifest_file().read_text())
    assert manifest["images"] == len(y) == 10 * manifest["distinct_fonts"]
    assert manifest["packages"] == {"fonts-fake": "1.0"}
    assert manifest["sha256"] == notmnist.cache_file().with_suffix(".npz.sha256").read_text()[:64]
    font = manifest["fonts"][0]
    assert {"file", "family", "style", "package", "version"} <= font.keys()
    monkeypatch.setattr(notmnist, "render_letters", pytest.fail)  # a second load renders nothing
    x_again, _ = notmnist.load_notmnist()
    np.testing.assert_array_equal(x_again, x)


def test_corrupt_cache_is_rendered_again(fake_packages):
    x, _ = notmnist.load_notmnist()
    cache = notmnist.cache_file()
    data = bytearray(cache.read_bytes())
    data[-1000] ^= 0x10
    cache.write_bytes(bytes(data))
    assert load_arrays(cache) is None
    x_again, _ = notmnist.load_notmnist()
    np.testing.assert_array_equal(x_again, x)
    assert load_arrays(cache) is not None


def test_changed_package_list_renders_again(fake_packages, monkeypatch):
    notmnist.load_notmnist()
    fake_packages.write_text("fonts-fake\nfonts-other\n")
    monkeypatch.setattr(
        fonts, "installed_versions", lambda names: {"fonts-fake": "1.0", "fonts-other": "2"}
    )
    calls = []
    monkeypatch.setattr(notmnist, "render_letters", lambda *a, **k: calls.append(1) or _stub())
    notmnist.load_notmnist()
    assert calls == [1]


def _stub():
    return letters.LetterSet(
        np.zeros((10, SIDE, SIDE), np.uint8), np.arange(10), [{"package": "fonts-fake"}]
    )


def test_missing_font_packages_name_the_apt_command(tmp_path, monkeypatch):
    listing = tmp_path / "debian_fonts.txt"
    listing.write_text("fonts-surely-not-a-debian-package-xyz\n")
    monkeypatch.setattr(fonts, "PACKAGE_LIST", listing)
    monkeypatch.setenv("SGMCMC_DATA", str(tmp_path / "data"))
    monkeypatch.delenv(notmnist.ENV_DIR, raising=False)
    with pytest.raises(UserError, match="apt-get install -y") as error:
        notmnist.load_notmnist()
    message = str(error.value)
    assert "fonts-surely-not-a-debian-package-xyz" in message and str(listing) in message
    assert "\n" not in message
    assert not notmnist.cache_file().exists()


def test_package_list_format():
    names = fonts.font_packages()
    assert len(names) == len(set(names)) >= 50
    assert all(name.startswith("fonts-") and " " not in name for name in names)


def _write_png(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def test_real_notmnist_folder_is_loaded_and_bad_files_counted(tmp_path, monkeypatch):
    root = tmp_path / "notMNIST_small"
    for label, letter in enumerate(LETTERS):
        for k in range(2):
            _write_png(root / letter / f"{k}.png", np.full((SIDE, SIDE), 10 * label + k, np.uint8))
    (root / "A" / "broken.png").write_bytes(b"\x89PNG truncated")
    _write_png(root / "B" / "big.png", np.zeros((30, 30), np.uint8))
    x, y, skipped = notmnist.load_png_folder(root)
    assert skipped == 2 and x.shape == (20, SIDE, SIDE) and x.dtype == np.uint8
    assert np.bincount(y).tolist() == [2] * 10
    assert x[y == 3].reshape(2, -1)[:, 0].tolist() == [30, 31]
    monkeypatch.setenv(notmnist.ENV_DIR, str(root))
    x_env, y_env = notmnist.load_notmnist()
    np.testing.assert_array_equal(x_env, x)
    np.testing.assert_array_equal(y_env, y)


def test_folder_without_letter_subfolders_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv(notmnist.ENV_DIR, str(tmp_path))
    with pytest.raises(UserError, match="has no folder"):
        notmnist.load_notmnist()


def _debian_fonts_installed() -> bool:
    names = fonts.font_packages()
    return set(fonts.installed_versions(names)) >= set(names)


@pytest.mark.slow
@pytest.mark.skipif(
    not _debian_fonts_installed(),
    reason=f"font packages not installed (run `make data` as root, or `{fonts.install_command()}`)",
)
def test_full_debian_set_has_the_size_of_notmnist_small(tmp_path, monkeypatch):
    monkeypatch.setenv("SGMCMC_DATA", str(tmp_path))
    monkeypatch.delenv(notmnist.ENV_DIR, raising=False)
    x, y = notmnist.load_notmnist()
    manifest = notmnist.read_manifest()
    assert len(x) >= 15_000 and manifest["distinct_fonts"] >= 1_500
    assert np.bincount(y).tolist() == [len(y) // 10] * 10
    assert len({font["glyphs_sha256"] for font in manifest["fonts"]}) == manifest["distinct_fonts"]
    assert all(font["version"] for font in manifest["fonts"])
    assert manifest["packages_contributing"] >= 50


def _spoil_manifest(kind: str) -> None:
    path = notmnist.manifest_file()
    if kind == "a list":
        path.write_text("[]")
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe\x00")
    elif kind == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif kind == "without distinct_fonts":
        manifest = json.loads(path.read_text())
        del manifest["distinct_fonts"]
        path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("kind", ["a list", "binary", "truncated", "without distinct_fonts"])
def test_a_damaged_manifest_renders_again_instead_of_crashing(kind, fake_packages, capsys):
    from sgmcmc_paper.cli import main

    x, _ = notmnist.load_notmnist()
    _spoil_manifest(kind)
    assert notmnist.load_cached() is None
    assert main(["data", "--only", "notmnist"]) == 0
    assert "distinct fonts" in capsys.readouterr().out
    np.testing.assert_array_equal(notmnist.load_notmnist()[0], x)


def test_a_cache_of_another_layout_with_a_matching_checksum_renders_again(fake_packages):
    from sgmcmc_paper.data.cache import save_arrays

    x, y = notmnist.load_notmnist()
    manifest = json.loads(notmnist.manifest_file().read_text())
    for arrays in (
        {"images": x, "labels": y},  # other names
        {"x": x[:-1], "y": y},  # images and labels of different lengths
        {"x": x[:10], "y": y[:10]},  # fewer images than the manifest lists
    ):
        manifest["sha256"] = save_arrays(notmnist.cache_file(), arrays)
        notmnist.manifest_file().write_text(json.dumps(manifest))
        assert notmnist.load_cached() is None
        x_again, y_again = notmnist.load_notmnist()
        np.testing.assert_array_equal(x_again, x)
        np.testing.assert_array_equal(y_again, y)
