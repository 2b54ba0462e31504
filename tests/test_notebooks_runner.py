"""``sgmcmc notebooks``: papermill in order, parameters injected, atomic outputs, one-line
failures, ``--only`` and ``--fresh`` (on tiny synthetic notebooks)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from sgmcmc_paper.book.notebooks import merge_store, run_notebooks, select, source_notebooks
from sgmcmc_paper.errors import UserError

PARAMETERS = 'profile = "paper"\ndevice = "auto"'


def _notebook(path: Path, *cells: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    parameters = nbformat.v4.new_code_cell(PARAMETERS)
    parameters.metadata["tags"] = ["parameters"]
    nb.cells = [parameters, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)


WRITE_RUN = """
import json, os, pathlib
folder = pathlib.Path(os.environ.get("SGMCMC_RESULTS", "unset")) / profile / "abc"
folder.mkdir(parents=True, exist_ok=True)
(folder / "run.json").write_text(json.dumps({"profile": profile}))
print("store", os.environ.get("SGMCMC_RESULTS"))
"""


@pytest.fixture
def book(tmp_path, monkeypatch):
    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path / "results"))
    source = tmp_path / "notebooks"
    source.mkdir()
    _notebook(source / "01_first.ipynb", "print('profile is', profile, device)")
    _notebook(source / "00_zeroth.ipynb", WRITE_RUN)
    return source, tmp_path / "out"


def _outputs(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_runs_in_order_with_parameters_and_one_line_each(book):
    source, out = book
    lines = []
    runs = run_notebooks("ci", device="cpu", source_dir=source, output_dir=out, log=lines.append)
    assert [r.name for r in runs] == ["00_zeroth", "01_first"]
    assert len(lines) == 2 and lines[0].startswith("[1/2] 00_zeroth: ") and lines[0].endswith(" s")
    assert "profile is ci cpu" in _outputs(out / "01_first.ipynb")
    executed = nbformat.read(out / "01_first.ipynb", as_version=4)
    assert executed.metadata["kernelspec"]["name"] == "python3"
    assert sorted(p.name for p in out.iterdir()) == ["00_zeroth.ipynb", "01_first.ipynb"]


def test_failure_names_notebook_and_cell_and_stops(book):
    source, out = book
    _notebook(source / "00a_broken.ipynb", "x = 1", "raise ValueError('planted\\nsecond line')")
    with pytest.raises(UserError) as info:
        run_notebooks("ci", source_dir=source, output_dir=out, log=lambda _: None)
    message = str(info.value)
    assert "00a_broken.ipynb" in message and "ValueError: planted" in message
    assert "cell" in message and "\n" not in message
    assert (out / "00_zeroth.ipynb").exists()  # the one before ran and was kept
    assert not (out / "00a_broken.ipynb").exists()  # no half-run notebook in the book
    assert not (out / "01_first.ipynb").exists()  # stopped at the first failure
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_only_and_unknown_names(book):
    source, out = book
    notebooks = source_notebooks(source)
    assert [p.stem for p in select(notebooks, "01")] == ["01_first"]
    assert [p.stem for p in select(notebooks, "00_zeroth.ipynb")] == ["00_zeroth"]
    with pytest.raises(UserError, match="matches no notebook; choose one of: 00_zeroth, 01_first"):
        select(notebooks, "07")
    with pytest.raises(UserError, match="matches several"):
        select(notebooks, "0")
    with pytest.raises(UserError, match="unknown profile"):
        run_notebooks("huge", source_dir=source, output_dir=out)


def test_fresh_trains_into_an_empty_store_then_replaces_the_old_results(book, tmp_path):
    source, out = book
    store = tmp_path / "results"
    old = store / "ci" / "abc"
    old.mkdir(parents=True)
    (old / "run.json").write_text('{"old": true}')
    (old / "stale.npz").write_text("old")
    (store / "hparams").mkdir()
    (store / "hparams" / "paper.json").write_text('{"selected": {}}')
    run_notebooks("ci", fresh=True, only="00", source_dir=source, output_dir=out, log=print)
    assert f"store {store / '.fresh'}" in _outputs(out / "00_zeroth.ipynb")
    assert json.loads((old / "run.json").read_text()) == {"profile": "ci"}
    assert not (old / "stale.npz").exists()
    assert not (store / ".fresh").exists()
    assert (store / "hparams" / "paper.json").read_text() == '{"selected": {}}'
    assert os.environ["SGMCMC_RESULTS"] == str(store)  # restored


def test_merge_store_moves_files_and_run_folders(tmp_path):
    fresh, store = tmp_path / "fresh", tmp_path / "store"
    (fresh / "hparams").mkdir(parents=True)
    (fresh / "hparams" / "ci.json").write_text("new")
    (fresh / "ci" / "k1").mkdir(parents=True)
    (fresh / "ci" / "k1" / "run.json").write_text("{}")
    (fresh / "ci" / ".tmp-k2-1").mkdir()
    (store / "hparams").mkdir(parents=True)
    (store / "hparams" / "ci.json").write_text("old")
    merge_store(fresh, store)
    assert (store / "hparams" / "ci.json").read_text() == "new"
    assert (store / "ci" / "k1" / "run.json").exists()
    assert not (store / "ci" / ".tmp-k2-1").exists() and not fresh.exists()


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    env = {**os.environ, "SGMCMC_RESULTS": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "sgmcmc", "notebooks", "--profile", "ci", "--only", "no-such"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "no-such" in out.stderr


def test_the_book_s_notebooks_are_clean_and_parameterised():
    """Every source notebook: no outputs, kernelspec python3, a `parameters` cell giving
    profile (from $SGMCMC_PROFILE), device, seeds and output_dir, a Session, and a claims table
    closing it (the reproduction notebooks' contract)."""
    notebooks = source_notebooks()
    assert len(notebooks) >= 8
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["kernelspec"]["name"] == "python3", path.name
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name
        (parameters,) = [c for c in code if "parameters" in c.metadata.get("tags", [])]
        for name in ("profile", "device", "seeds", "output_dir"):
            assert f"\n{name} = " in f"\n{parameters.source}", (path.name, name)
        assert 'os.environ.get("SGMCMC_PROFILE")' in parameters.source, path.name
        source = "\n".join(c.source for c in code)
        assert re.search(r"Session\(\s*profile", source), path.name
        assert "session.claims(" in source, path.name
        assert code[-1].source.strip() == "session.finish()", path.name


def test_a_stored_only_build_runs_a_notebook_whose_runs_are_missing_at_a_smaller_profile(
    book, tmp_path
):
    """03 needs smallMNIST runs the empty store lacks: stored only, it falls back through quick
    to ci (trained there), its kernel not stored-only; 00 needs no run and keeps the requested
    profile, its kernel stored-only. Both say so on their line."""
    source = tmp_path / "planned"
    source.mkdir()
    show = "import os; print('profile is', profile, os.environ.get('SGMCMC_STORED_ONLY'))"
    for stem in ("00_hyperparameters", "03_small_mnist"):
        _notebook(source / f"{stem}.ipynb", show)
    out = tmp_path / "planned-out"
    lines = []
    runs = run_notebooks(
        "paper", stored_only=True, source_dir=source, output_dir=out, log=lines.append
    )
    assert [(r.name, r.profile) for r in runs] == [
        ("00_hyperparameters", "paper"),
        ("03_small_mnist", "ci"),
    ]
    assert runs[0].missing == 0 and runs[1].missing > 0
    assert "profile is paper 1" in _outputs(out / "00_hyperparameters.ipynb")
    assert "profile is ci None" in _outputs(out / "03_small_mnist.ipynb")
    assert lines[0].startswith("[1/2] 00_hyperparameters: paper (stored only: needs no runs), ")
    assert lines[1].startswith(
        f"[2/2] 03_small_mnist: ci (stored only: 0 of {runs[1].missing} paper-profile runs "
        "stored; 0 of "
    )
    assert "quick-profile runs stored" in lines[1] and "; ci runs are trained), " in lines[1]
    assert "SGMCMC_STORED_ONLY" not in os.environ
    with pytest.raises(UserError, match="stored-only"):
        run_notebooks("quick", stored_only=True, fresh=True, source_dir=source, output_dir=out)


def test_quick_and_paper_without_gpu_are_stored_only_and_paper_refuses_fresh(
    tmp_path, monkeypatch, capsys
):
    """On a CPU the quick and paper profiles never train: the build is stored-only, and
    retraining the paper profile is one line naming the fixes."""
    import torch

    import sgmcmc_paper.book.notebooks
    from sgmcmc_paper.cli import main

    monkeypatch.setenv("SGMCMC_RESULTS", str(tmp_path))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    calls = []
    monkeypatch.setattr(
        sgmcmc_paper.book.notebooks,
        "run_notebooks",
        lambda profile, **kw: calls.append((profile, kw)) or [],
    )
    assert main(["notebooks", "--profile", "paper"]) == 0
    assert calls[-1][0] == "paper" and calls[-1][1]["stored_only"] is True
    assert main(["notebooks", "--profile", "quick"]) == 0
    assert calls[-1][1]["stored_only"] is True
    assert main(["notebooks", "--profile", "paper", "--train-on-cpu"]) == 0
    assert calls[-1][1]["stored_only"] is False
    assert main(["notebooks", "--profile", "ci"]) == 0
    assert calls[-1][1]["stored_only"] is False  # CI's nbval profile trains
    assert main(["notebooks", "--profile", "quick", "--fresh"]) == 0  # asked for: trains
    assert calls[-1][1]["stored_only"] is False
    capsys.readouterr()
    assert main(["notebooks", "--profile", "paper", "--fresh"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "needs a GPU" in err and "PROFILE=quick" in err and "--train-on-cpu" in err
    assert len(calls) == 5
    assert main(["notebooks", "--profile", "paper", "--dry-run"]) == 0
    plan = capsys.readouterr().out.splitlines()
    assert len(calls) == 5  # a dry run executes nothing
    assert plan[0].startswith("stored-only build at paper")
    assert plan[1] == "00_hyperparameters: paper (stored only: needs no runs)"
    assert plan[2].startswith("01_test_accuracy: ci (stored only: 0 of ")
    assert "paper-profile runs stored" in plan[2] and "quick-profile runs stored" in plan[2]


def test_a_failed_notebook_is_kept_beside_the_output_folder_until_it_succeeds(book):
    source, out = book
    _notebook(source / "00a_broken.ipynb", "raise ValueError('planted')")
    with pytest.raises(UserError) as info:
        run_notebooks("ci", only="00a", source_dir=source, output_dir=out, log=lambda _: None)
    kept = out.parent / f"{out.name}.failed" / "00a_broken.ipynb"
    assert f"partial output kept at {kept}" in str(info.value) and kept.exists()
    assert "planted" in json.dumps(nbformat.read(kept, as_version=4).cells[-1]["outputs"])
    _notebook(source / "00a_broken.ipynb", "print('fixed')")
    run_notebooks("ci", only="00a", source_dir=source, output_dir=out, log=lambda _: None)
    assert (out / "00a_broken.ipynb").exists() and not kept.parent.exists()


def test_the_kernel_runs_encrypted_and_prints_no_plain_text_warning(book, capfd):
    import zmq

    if not zmq.has("curve"):
        pytest.skip("this pyzmq has no CurveZMQ, so the kernel's traffic cannot be encrypted")
    source, out = book
    run_notebooks("ci", only="01", source_dir=source, output_dir=out, log=lambda _: None)
    captured = capfd.readouterr()
    assert "without encryption" not in captured.err + captured.out
