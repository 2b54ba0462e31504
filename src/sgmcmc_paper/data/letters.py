"""Render the letters A–J of many fonts as 28×28 notMNIST-style images.

Each face is rendered white on black at :data:`RENDER_PX` pixels per em (Pillow/FreeType,
anti-aliased), cropped to the ink's bounding box, scaled (Lanczos) so that its longer side is 28
pixels keeping the aspect ratio, and centred in a 28×28 frame. No augmentation. A face is kept only
if its character map (read with fontTools) has all ten letters, none of them renders blank, and no
two of them render the same; faces whose ten glyphs hash the same as an earlier face's are
duplicates and dropped. Every kept face gives ten images, so the letters are exactly balanced.
"""

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fontTools.ttLib import TTCollection, TTFont, TTLibError
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from sgmcmc_paper.data.fonts import FontFile

LETTERS = "ABCDEFGHIJ"
SIDE = 28
RENDER_PX = 64


@dataclass(frozen=True)
class FontFace:
    """One face of a font file (collections ``.ttc`` hold several, numbered from 0)."""

    file: FontFile
    index: int = 0


@dataclass
class LetterSet:
    """Rendered letters: ``images`` uint8 ``(n, 28, 28)``, ``labels`` int64 (0..9 for A..J).

    ``fonts`` describes each kept face (rows ``10 i .. 10 i + 9`` of ``images`` are face ``i``'s
    A..J); ``dropped`` counts the faces left out, by reason.
    """

    images: np.ndarray
    labels: np.ndarray
    fonts: list[dict] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)


def font_faces(files: Iterable[FontFile]) -> list[FontFace]:
    """Every face of every file (a collection contributes one face per font it holds)."""
    faces = []
    for file in files:
        count = 1
        if file.path.suffix.lower() in {".ttc", ".otc"}:
            try:
                count = len(TTCollection(file.path, lazy=True).fonts)
            except (TTLibError, OSError, ValueError):
                count = 1  # rendering will report it as unreadable
        faces += [FontFace(file, index) for index in range(count)]
    return faces


def has_letters(face: FontFace) -> bool | None:
    """Whether the face's character map has A–J; None if fontTools cannot read the font."""
    try:
        with TTFont(face.file.path, fontNumber=face.index, lazy=True) as font:
            cmap = font.getBestCmap() or {}
    except Exception:  # fontTools raises many kinds of errors for malformed fonts
        return None
    return all(ord(letter) in cmap for letter in LETTERS)


def render_glyph(font: ImageFont.FreeTypeFont, letter: str) -> np.ndarray | None:
    """One letter, cropped to its ink and fitted into 28×28, or None if it renders blank."""
    left, top, right, bottom = font.getbbox(letter)
    if right <= left or bottom <= top:
        return None
    pad = 2
    canvas = Image.new("L", (right - left + 2 * pad, bottom - top + 2 * pad), 0)
    ImageDraw.Draw(canvas).text((pad - left, pad - top), letter, fill=255, font=font)
    ink = canvas.getbbox()
    if ink is None:
        return None
    glyph = canvas.crop(ink)
    scale = SIDE / max(glyph.size)
    width, height = (max(1, min(SIDE, round(side * scale))) for side in glyph.size)
    glyph = glyph.resize((width, height), Image.Resampling.LANCZOS)
    frame = Image.new("L", (SIDE, SIDE), 0)
    frame.paste(glyph, ((SIDE - width) // 2, (SIDE - height) // 2))
    image = np.asarray(frame)
    return image if image.any() else None


def render_face(face: FontFace) -> tuple[np.ndarray, str, str] | str:
    """``(glyphs (10, 28, 28), family, style)``, or the reason the face is dropped."""
    readable = has_letters(face)
    if readable is None:
        return "unreadable"
    if not readable:
        return "no A-J in character map"
    try:
        font = ImageFont.truetype(
            str(face.file.path), RENDER_PX, index=face.index, layout_engine=ImageFont.Layout.BASIC
        )
        glyphs = [render_glyph(font, letter) for letter in LETTERS]
    except (OSError, ValueError):
        return "unreadable"
    if any(glyph is None for glyph in glyphs):
        return "blank glyph"
    if len({glyph.tobytes() for glyph in glyphs}) < len(LETTERS):
        return "identical glyphs"
    family, style = font.getname()
    return np.stack(glyphs), family or "", style or ""


def render_letters(faces: Iterable[FontFace], progress: bool = False) -> LetterSet:
    """Render A–J for every face, keeping the distinct, complete ones (see the module doc)."""
    faces = sorted(faces, key=lambda f: (f.file.package, str(f.file.path), f.index))
    images, fonts, seen, dropped = [], [], set(), Counter()
    fonttools_log = logging.getLogger("fontTools")
    level = fonttools_log.level
    fonttools_log.setLevel(logging.ERROR)  # its warnings about harmless table quirks are noise
    try:
        rendered_faces = [
            (face, render_face(face))
            for face in tqdm(faces, desc="rendering letters", unit="font", disable=not progress)
        ]
    finally:
        fonttools_log.setLevel(level)
    for face, rendered in rendered_faces:
        if isinstance(rendered, str):
            dropped[rendered] += 1
            continue
        glyphs, family, style = rendered
        digest = hashlib.sha256(glyphs.tobytes()).hexdigest()
        if digest in seen:
            dropped["duplicate of a kept font"] += 1
            continue
        seen.add(digest)
        images.append(glyphs)
        fonts.append(
            {
                "file": str(face.file.path),
                "index": face.index,
                "family": family,
                "style": style,
                "package": face.file.package,
                "version": face.file.version,
                "glyphs_sha256": digest,
            }
        )
    x = np.concatenate(images) if images else np.zeros((0, SIDE, SIDE), np.uint8)
    y = np.tile(np.arange(len(LETTERS), dtype=np.int64), len(fonts))
    return LetterSet(x, y, fonts, dropped)


def faces_in(paths: Iterable[Path], package: str, version: str) -> list[FontFace]:
    """Faces of font files that came from no Debian package (e.g. matplotlib's bundled fonts)."""
    return font_faces(FontFile(Path(path), package, version) for path in paths)
