"""What ``sgmcmc data`` reports about one dataset once it is fetched and verified."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Summary:
    """One dataset: where it came from, its sizes, its checksum status and where it is cached."""

    name: str
    source: str
    counts: str
    checksum: str
    path: Path

    def lines(self) -> list[str]:
        """The summary as aligned ``key: value`` lines under the dataset's name."""
        fields = {
            "source": self.source,
            "counts": self.counts,
            "checksum": self.checksum,
            "cache": self.path,
        }
        return [self.name] + [f"  {key:<9} {value}" for key, value in fields.items()]
