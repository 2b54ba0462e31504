"""``Session``: every chapter says which profile its numbers come from."""

from sgmcmc.session import Session


def test_below_the_paper_profile_a_chapter_says_it_is_a_preview(tmp_path, capsys):
    Session("ci", device="cpu", output_dir=tmp_path)
    out = capsys.readouterr().out
    assert "ci: seconds per run" in out  # the provenance
    assert Session("ci", quiet=True)._preview_notice().count("Preview") == 1
    assert "a preview" in Session("quick", quiet=True).profile_note()
    assert Session("paper", quiet=True).profile_note() == (
        "At the paper profile (the paper's protocol)."
    )
