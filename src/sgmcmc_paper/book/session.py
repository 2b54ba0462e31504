"""What every notebook does first and last: settle its parameters, say where and with what it
runs, get runs through the store, time itself, and state the paper's claims with verdicts.

Usage, right after a notebook's ``parameters`` cell::

    session = Session(profile, device=device, seeds=seeds, output_dir=output_dir)
    result = session.run(config)          # stored result, or train and store it
    ...
    session.claims(claims.accuracy(...))  # sgmcmc_paper.analysis.claims: verdicts
    session.finish()                      # wall time, runs trained and loaded
    session.glue("table1", frame)         # for the book's pages ({glue} + :doc:)
    session.glue_text("sgd_final", "96.5 %")  # a number for the prose ({glue:text})

``claims`` and ``finish`` glue their tables as ``claims`` and ``provenance``.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAPER_PROFILE = "paper"
#: Set (to ``1``) by a stored-only book build (:mod:`sgmcmc_paper.book.notebooks`) for the
#: notebooks' kernels: a :class:`Session` then trains nothing (``stored_only``).
STORED_ONLY_ENV = "SGMCMC_STORED_ONLY"


@dataclass
class Session:
    """A notebook's context. ``seeds=None`` means the plan's seeds for ``notebook`` (a file
    stem: :func:`sgmcmc_paper.protocol.plan.notebook_seeds`), else the profile's. ``output_dir``
    is the results root (runs, hyper-parameter selections); when given it becomes this process's
    ``$SGMCMC_RESULTS``, so everything the notebook reads agrees; ``None`` keeps
    ``$SGMCMC_RESULTS``, else ``results/``. The provenance (profile, hardware, versions, store)
    is printed on creation unless ``quiet``; below the ``paper`` profile a notice says the
    chapter is a preview, and every table it glues says its profile.

    ``stored_only`` (default: ``$SGMCMC_STORED_ONLY`` is ``1``): :meth:`run` trains nothing; a
    run the store lacks is a :class:`~sgmcmc_paper.engine.untrained.NotTrained`, whose fate
    "not trained" travels into every table like a failed run's (book/methods.md, "Runs not
    trained")."""

    profile_name: str
    device: str = "auto"
    seeds: tuple[int, ...] | list[int] | None = None
    output_dir: str | Path | None = None
    quiet: bool = False
    stored_only: bool | None = None
    notebook: str | None = None
    not_trained: list[str] = field(default_factory=list, init=False)
    trained: list[tuple[str, float]] = field(default_factory=list, init=False)
    loaded: list[str] = field(default_factory=list, init=False)
    made_on: dict[str, tuple[str, float]] = field(default_factory=dict, init=False)
    failed: dict[str, tuple[str, str]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        from sgmcmc_paper.analysis.plotting import apply_style
        from sgmcmc_paper.paths import results_dir
        from sgmcmc_paper.protocol.profiles import get_profile

        self.profile = get_profile(self.profile_name)
        if self.seeds is None and self.notebook is not None:
            from sgmcmc_paper.protocol.plan import notebook_seeds

            self.seeds = notebook_seeds(self.notebook, self.profile.name)
        self.seeds = tuple(self.profile.seeds if self.seeds is None else self.seeds)
        if self.stored_only is None:
            self.stored_only = os.environ.get(STORED_ONLY_ENV) == "1"
        if self.output_dir is not None:
            os.environ["SGMCMC_RESULTS"] = str(Path(self.output_dir).resolve())
        self.store = results_dir()
        self._start = time.perf_counter()
        apply_style()
        if not self.quiet:
            print(self.provenance_text())
            if self.profile.name != PAPER_PROFILE:
                from IPython.display import HTML, display

                display(HTML(self._preview_notice()))

    def profile_note(self) -> str:
        """One sentence: the profile these results come from, and whether it is the paper's."""
        if self.profile.name == PAPER_PROFILE:
            return "At the paper profile (the paper's protocol)."
        return (
            f"At the {self.profile.name} profile: a preview at a smaller size, not the paper's "
            "protocol."
        )

    def _preview_notice(self) -> str:
        from html import escape

        return (
            '<div class="admonition warning"><p class="admonition-title">Preview</p><p>'
            f"{escape(self.profile_note())} The {self.profile.name} profile is "
            f"{escape(self.profile.description)}. At the paper profile the numbers and verdicts "
            "of this chapter may differ.</p></div>"
        )

    # ------------------------------------------------------------------ provenance
    def provenance(self) -> dict[str, Any]:
        """Profile, hardware, versions and store, as a flat dict."""
        import numpy as np
        import torch

        import sgmcmc
        from sgmcmc_paper.engine.experiment import device_name, resolve_device

        resolved = resolve_device(self.device)
        info = {
            "profile": f"{self.profile.name}: {self.profile.description}",
            "seeds": ", ".join(map(str, self.seeds)),
            "device": f"{resolved} ({device_name(resolved)})",
            "python": platform.python_version(),
            "sgmcmc": sgmcmc.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "store": str(self.store),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        for name in ("arviz", "scipy"):
            module = sys.modules.get(name)
            if module is not None:
                info[name] = module.__version__
        return info

    def provenance_text(self) -> str:
        info = self.provenance()
        width = max(map(len, info))
        return "\n".join(f"{key:<{width}}  {value}" for key, value in info.items())

    # ------------------------------------------------------------------ runs
    def run(self, config):
        """The stored result of ``config`` (made on any device), else train, store, return it;
        with ``stored_only``, else a :class:`~sgmcmc_paper.engine.untrained.NotTrained`."""
        from sgmcmc_paper.engine.store import find_result, run_or_load
        from sgmcmc_paper.engine.untrained import NotTrained

        found = find_result(config, self.store)
        if found is not None:
            self.loaded.append(config.key())
            # stored only: as it is (run_or_load would retrain a run that skipped a set
            # installed here since)
            result = (
                found
                if self.stored_only
                else run_or_load(config, device=self.device, root=self.store)
            )
        elif self.stored_only:
            self.not_trained.append(f"{_label(config)} seed {config.seed}")
            return NotTrained(config)
        else:
            start = time.perf_counter()
            result = run_or_load(config, device=self.device, root=self.store)
            self.trained.append((config.key(), time.perf_counter() - start))
        provenance = result.provenance or {}
        self.made_on[config.key()] = (
            provenance.get("device_name") or provenance.get("device") or "unknown device",
            float(provenance.get("timing", {}).get("total_s", math.nan)),
        )
        from sgmcmc_paper.analysis.tables import run_fate

        fate = run_fate(result)
        if fate.status != "complete":
            where = f" at epoch {fate.epoch}" if fate.epoch is not None else ""
            self.failed[config.key()] = (
                fate.status,
                f"{_label(config)} seed {config.seed}{where}",
            )
        return result

    @property
    def diverged(self) -> dict[str, str]:
        """The runs loaded or trained so far that diverged: key -> which, and where."""
        return {k: text for k, (status, text) in self.failed.items() if status == "diverged"}

    def glue(self, name: str, value: Any) -> None:
        """Make ``value`` pasteable in the book's pages as ``{glue} name`` with ``:doc:`` this
        notebook: a DataFrame as an HTML table headed by :meth:`profile_note`, anything else
        as a paragraph (MyST-NB pastes HTML, images and plain text across pages, not
        Markdown)."""
        from html import escape

        from IPython.display import HTML
        from myst_nb import glue

        if hasattr(value, "to_html"):
            note = f"<p><em>{escape(self.profile_note())}</em></p>"
            html = note + value.to_html(border=0, na_rep="")
        else:
            html = f"<p>{escape(str(value))}</p>"
        glue(name, HTML(html), display=False)

    def glue_text(self, name: str, text: Any) -> str:
        """Make ``text`` (a number or words about this edition's results) pasteable inline in
        the book's prose as ``{glue:text}`` (``path/to/notebook.ipynb::name:s`` from another
        page). Below the paper profile the profile is appended, so no preview number reads as
        the paper's. Returns what was glued."""
        from myst_nb import glue

        shown = str(text)
        if self.profile.name != PAPER_PROFILE:
            shown += f" ({self.profile.name} profile)"
        glue(name, shown, display=False)
        return shown

    # ------------------------------------------------------------------ closing
    def claims(self, rows: list[Any]):
        """The paper's claims with computed verdicts, as a table: ``rows`` are
        :class:`~sgmcmc_paper.analysis.claims.Claim` records (what the functions of
        :mod:`sgmcmc_paper.analysis.claims` return) or rows of :func:`claim`."""
        import pandas as pd

        from sgmcmc_paper.analysis.claims import COLUMNS, Claim

        rows = [row.row() if isinstance(row, Claim) else row for row in rows]
        frame = pd.DataFrame(rows, columns=list(COLUMNS)).fillna("")
        frame.attrs["profile"] = self.profile.name
        frame = frame.set_index("section")
        self.glue("claims", frame)
        return frame

    def finish(self) -> str:
        """One line: this notebook's wall time, how many runs it trained and loaded, where they
        were made, and which did not complete (diverged or collapsed: tables count them only
        at epochs before their fate, by the failed-run rule of
        :data:`~sgmcmc_paper.analysis.tables.FAILED_RUN_RULE`)."""
        total = time.perf_counter() - self._start
        trained = sum(seconds for _, seconds in self.trained)
        line = (
            f"profile {self.profile.name}: wall time {total:.1f} s; trained {len(self.trained)} "
            f"run(s) in {trained:.1f} s, loaded {len(self.loaded)} from the store"
        )
        devices: dict[str, list[float]] = {}
        for device, seconds in self.made_on.values():
            devices.setdefault(device, []).append(seconds)
        if devices:
            made = "; ".join(
                f"{len(times)} on {device} ({sum(t for t in times if t == t):.0f} s)"
                for device, times in sorted(devices.items())
            )
            line += f"; its runs were made {made} (wall time of each run, summed)"
        if self.failed:
            parts = []
            for status in ("diverged", "collapsed"):
                which = sorted(text for s, text in self.failed.values() if s == status)
                if which:
                    parts.append(f"{len(which)} {status} ({'; '.join(which)})")
            line += (
                f"; {', '.join(parts)}: tables count them only at epochs before their fate "
                "(failed runs in tables, methods chapter)"
            )
        if self.not_trained:
            line += (
                f"; {len(self.not_trained)} not trained (a stored-only build: the store lacks "
                f"them, `sgmcmc fill --profile {self.profile.name}` trains them; tables count "
                "them nowhere)"
            )
        print(line)
        self.glue("provenance", line)
        return line


def _label(config) -> str:
    """A run's method and what sets it apart from the paper's runs of that method."""
    label = f"{config.method} {config.convention}"
    if config.convention == "langevin":
        label += " eq. 1" if config.precondition == "both" else " eq. 2"
    if config.temperature != 1.0:
        label += f" T={config.temperature:g}"
    return label


def claim(
    section: str,
    text: str,
    holds: bool | None,
    evidence: str,
    test: str = "",
    kind: str = "measured",
    statistic: float | None = None,
) -> dict[str, Any]:
    """One row of a claims table: ``holds`` is computed from results (``None``: not testable
    at this profile, which ``evidence`` explains); the same row as
    :meth:`sgmcmc_paper.analysis.claims.Claim.row`."""
    from sgmcmc_paper.analysis.claims import decide

    return decide(section, text, holds, statistic, evidence, test, kind).row()
