"""The Debian font packages the notMNIST-style letters are rendered from, and their font files.

The package list is ``sgmcmc/resources/debian_fonts.txt`` (one package a line, ``#`` comments);
``make data`` installs it with apt. Installed packages, their versions and their files are read
from dpkg (``dpkg-query``), so every rendered font can be traced to a package and version.
"""

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sgmcmc_paper.errors import UserError

PACKAGE_LIST = Path(__file__).resolve().parents[1] / "resources" / "debian_fonts.txt"
#: Font files rendered: TrueType/OpenType fonts and collections (Type 1 and bitmap fonts are not).
FONT_SUFFIXES = frozenset({".ttf", ".otf", ".ttc", ".otc"})


@dataclass(frozen=True)
class FontFile:
    """A font file and the Debian package (and version) that installed it."""

    path: Path
    package: str
    version: str


def font_packages(package_list: Path | None = None) -> list[str]:
    """The package names in the list, in order (comments and blank lines skipped)."""
    text = (package_list or PACKAGE_LIST).read_text()
    names = (line.split("#", 1)[0].strip() for line in text.splitlines())
    return [name for name in names if name]


def install_command(package_list: Path | None = None) -> str:
    """The shell command that installs every package of the list."""
    return f"sudo apt-get install -y $(sed 's/#.*//' {package_list or PACKAGE_LIST})"


def installed_versions(packages: list[str]) -> dict[str, str]:
    """The installed version of each package that is installed (others are left out)."""
    if not packages or shutil.which("dpkg-query") is None:
        return {}
    result = subprocess.run(
        ["dpkg-query", "--show", "--showformat=${Package}\\t${db:Status-Abbrev}\\t${Version}\\n"]
        + packages,
        capture_output=True,
        text=True,
        check=False,
    )
    versions = {}
    for line in result.stdout.splitlines():
        name, status, version = line.split("\t")
        if status.startswith("ii"):
            versions[name] = version
    return versions


def require_installed(package_list: Path | None = None) -> dict[str, str]:
    """``{package: version}`` for the whole list; UserError naming the fix if any is missing."""
    packages = font_packages(package_list)
    versions = installed_versions(packages)
    missing = [name for name in packages if name not in versions]
    if missing:
        shown = ", ".join(missing[:3]) + (", …" if len(missing) > 3 else "")
        raise UserError(
            f"the notMNIST-style letters need {len(missing)} Debian font package(s) that are "
            f"not installed ({shown}); run `make data` as root, or "
            f"`{install_command(package_list)}`"
        )
    return versions


def package_font_files(versions: dict[str, str]) -> list[FontFile]:
    """The font files installed by each package in ``versions``, sorted by package and path."""
    files = []
    for package, version in sorted(versions.items()):
        listing = subprocess.run(
            ["dpkg-query", "--listfiles", package], capture_output=True, text=True, check=True
        ).stdout.splitlines()
        paths = sorted(
            {Path(line) for line in listing if Path(line).suffix.lower() in FONT_SUFFIXES}
        )
        files += [FontFile(path, package, version) for path in paths if path.is_file()]
    return files
