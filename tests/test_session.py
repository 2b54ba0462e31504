"""``Session``: every chapter says which profile its numbers come from."""

from sgmcmc_paper.book.session import Session


def test_below_the_paper_profile_a_chapter_says_it_is_a_preview(tmp_path, capsys):
    Session("ci", device="cpu", output_dir=tmp_path)
    out = capsys.readouterr().out
    assert "ci: seconds per run" in out  # the provenance
    assert Session("ci", quiet=True)._preview_notice().count("Preview") == 1
    assert "a preview" in Session("quick", quiet=True).profile_note()
    assert Session("paper", quiet=True).profile_note() == (
        "At the paper profile (the paper's protocol)."
    )


def test_the_closing_line_names_the_runs_that_diverged(tmp_path, monkeypatch, capsys):
    import sgmcmc_paper.engine.store
    from sgmcmc_paper.engine.experiment import RunConfig, RunResult

    def stored(config, **_):
        status = "diverged" if config.seed == 1 else "complete"
        divergence = {"step": 1491, "reason": "non-finite loss", "epoch": 13}
        return RunResult(
            config=config,
            status=status,
            metrics={},
            provenance={"device_name": "NVIDIA H200", "timing": {"total_s": 90.0}},
            divergence=divergence if status == "diverged" else None,
        )

    monkeypatch.setattr(sgmcmc_paper.engine.store, "find_result", lambda config, root=None: True)
    monkeypatch.setattr(sgmcmc_paper.engine.store, "run_or_load", stored)
    monkeypatch.setattr("sgmcmc_paper.book.session.Session.glue", lambda self, name, value: None)
    session = Session("ci", device="cpu", output_dir=tmp_path, quiet=True)
    for seed in (0, 1):
        session.run(RunConfig(method="ksgld", convention="langevin", seed=seed))
    line = session.finish()
    assert "2 on NVIDIA H200 (180 s)" in line
    assert "1 diverged (ksgld langevin eq. 1 seed 1 at epoch 13)" in line
    assert line in capsys.readouterr().out


def test_claim_records_render_as_the_rows_of_claim(monkeypatch):
    """``Session.claims`` takes the records of ``analysis.claims`` and the rows of ``claim``
    alike: the same table (section, claim, holds, evidence), the statistic left out."""
    from sgmcmc_paper.analysis.claims import decide
    from sgmcmc_paper.book.session import claim

    glued = {}
    monkeypatch.setattr(
        "sgmcmc_paper.book.session.Session.glue",
        lambda self, name, value: glued.update({name: value}),
    )
    session = Session("ci", quiet=True)
    records = session.claims(
        [decide("4.1", "a claim", True, 0.5, "why"), decide("4.2", "b", None, None, "")]
    )
    rows = session.claims(
        [claim("4.1", "a claim", True, "why", statistic=0.5), claim("4.2", "b", None, "")]
    )
    assert records.equals(rows) and records.to_html() == rows.to_html()
    assert list(records.columns) == ["claim", "kind", "test", "statistic", "holds", "evidence"]
    assert list(records["holds"]) == ["yes", "n/a"]
    assert list(records["statistic"]) == ["0.5", ""]
    assert glued["claims"].equals(rows)
    tested = session.claims(
        [decide("4.1", "a", False, 0.25, "why not", "paired t, 95 %", "tested")]
    )
    assert tested.iloc[0].to_dict() == {
        "claim": "a",
        "kind": "tested",
        "test": "paired t, 95 %",
        "statistic": "0.25",
        "holds": "no",
        "evidence": "why not",
    }


def test_numbers_for_the_prose_are_glued_as_text_and_say_their_profile(monkeypatch):
    import myst_nb

    glued = {}
    monkeypatch.setattr(
        myst_nb, "glue", lambda name, value, display=True: glued.update({name: (value, display)})
    )
    assert Session("paper", quiet=True).glue_text("a", "97.0 %") == "97.0 %"
    assert glued["a"] == ("97.0 %", False)
    assert Session("ci", quiet=True).glue_text("b", 0.5) == "0.5 (ci profile)"


def test_the_closing_line_names_collapsed_runs(tmp_path, monkeypatch):
    import sgmcmc_paper.engine.store
    from sgmcmc_paper.engine.experiment import RunConfig, RunResult

    def stored(config, **_):
        epochs = [
            {"epoch": e, "single": {"accuracy": a}, "averaged": {"accuracy": a}}
            for e, a in enumerate((0.5, 0.9, 0.1, 0.1), start=1)
        ]
        return RunResult(
            config=config, status="complete", metrics={"epochs": epochs}, provenance={}
        )

    monkeypatch.setattr(sgmcmc_paper.engine.store, "find_result", lambda config, root=None: True)
    monkeypatch.setattr(sgmcmc_paper.engine.store, "run_or_load", stored)
    monkeypatch.setattr("sgmcmc_paper.book.session.Session.glue", lambda self, name, value: None)
    session = Session("ci", device="cpu", output_dir=tmp_path, quiet=True)
    session.run(RunConfig(method="ksgld", convention="paper", seed=2))
    line = session.finish()
    assert "1 collapsed (ksgld paper seed 2 at epoch 3)" in line
    assert "tables count them only at epochs before their fate" in line
