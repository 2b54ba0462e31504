"""``sgmcmc fill``: which runs, what they cost, the engines' independent trials, and a fill of the
``ci`` store through a two-node Ray cluster whose worker is killed mid-run.

The fast tests plant stored runs (fake timings) and trial functions. The slow one starts a Ray
cluster of two nodes on this machine (``ray start --head`` and ``ray start --address``, one CPU
each, loopback, token authentication with a token of its own), fills the ``ci`` runs of
notebooks 01 and 02 through it (4 runs: 02's are 01's) while a serial fill makes the same runs
in this process, kills the Ray worker that holds a run's lock once that run has saved its first
checkpoint, and checks that every run is stored once, that the killed run resumed, that a rerun
trains nothing, and that both stores hold the same results bit for bit (1 CPU thread per run in
both: CPU results differ in the last bits between thread counts).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from _fill_trials import die_once, hold, square

from sgmcmc_paper.cli import main
from sgmcmc_paper.engine.experiment import RunResult
from sgmcmc_paper.engine.fill import (
    CostModel,
    describe,
    fill_store,
    format_duration,
    select_configs,
    survey,
)
from sgmcmc_paper.engine.store import RUN_FILE, save_result
from sgmcmc_paper.paths import data_dir
from sgmcmc_paper.sweep.engines import run_trials

NOTEBOOKS = ("01_test_accuracy", "02_mixing")


@pytest.fixture
def store(tmp_path, monkeypatch):
    root = tmp_path / "results"
    monkeypatch.setenv("SGMCMC_RESULTS", str(root))
    return root


def _plant(config, root: Path, seconds: float, device: str) -> None:
    """A stored run of ``config`` that took ``seconds`` on ``device`` (no training)."""
    timing = {"total_s": seconds, "resumed": 0}
    result = RunResult(
        config=config,
        status="complete",
        metrics={"epochs": [], "windows": {}},
        provenance={"device": "cuda", "device_name": device, "timing": timing},
        predictions={"test/label": np.zeros(3, dtype=np.uint8)},
    )
    save_result(result, root)


# --------------------------------------------------------------------------- which runs, cost
def test_the_selection_is_each_key_once_and_filters_as_precompute_did():
    configs = select_configs("ci", NOTEBOOKS)
    keys = [c.key() for c in configs]
    assert len(keys) == len(set(keys)) > 0
    first = {c.key() for c in select_configs("ci", ["01_test_accuracy"])}
    assert set(keys) == first  # 02's runs are 01's
    small = select_configs("ci", ["03_small_mnist"])
    (size,) = {c.train_size for c in small}
    assert select_configs("ci", train_sizes=[size]) == small
    assert all(c.convention == "langevin" for c in select_configs("ci", convention="langevin"))
    assert select_configs("ci", keys=keys[:1]) == configs[:1]
    released = select_configs("ci", released_only=True)
    assert released and all(c.init == "tf" and c.convention == "paper" for c in released)


def test_a_listing_tells_apart_runs_that_differ_beyond_method_size_and_seed():
    """Released and Li et al.'s pSGLD are two runs of one seed: the listing names the rule; a
    run that trains as another method (its key is that method's) says so."""
    configs = select_configs("paper", ["01_test_accuracy"])
    words = {c.key(): describe(c).rsplit(" [", 1)[0] for c in configs}
    assert len(set(words.values())) == len(words)
    psgld = [c for c in configs if c.method == "psgld"]
    assert {c.psgld_rule for c in psgld} == {"released", "square"}
    assert all(f"{c.psgld_rule} average" in words[c.key()] for c in psgld)
    fsgd = next(c for c in configs if c.method == "fsgd")
    assert "(trains as sgd)" in describe(fsgd)


def test_dry_run_lists_stored_and_missing_runs_and_the_cost_from_stored_timings(store, capsys):
    configs = select_configs("ci", ["02_mixing"])
    by_method = {c.method: c for c in configs}
    sgd = by_method.get("sgd") or by_method["fsgd"]
    _plant(sgd, store, 100.0, "Fake GPU")  # selected, so stored
    _plant(by_method["sgld"].replace(seed=7), store, 240.0, "Fake GPU")  # similar, not selected
    _plant(by_method["sgld"].replace(seed=8), store, 250.0, "Fake GPU")
    assert main(["fill", "--profile", "ci", "--notebooks", "02_mixing", "--dry-run"]) == 0
    out = capsys.readouterr().out
    missing = len(configs) - 1
    assert f"1 stored, {missing} missing" in out
    assert f"02_mixing                  1 stored, {missing} missing" in out
    assert "01_test_accuracy           1 stored" in out
    sgld_line = next(
        line for line in out.splitlines() if f"[{by_method['sgld'].key()[:10]}]" in line
    )
    assert "~4 min 05 s on Fake GPU" in sgld_line  # the median of 240 and 250 s
    psgld_line = next(
        line for line in out.splitlines() if f"[{by_method['psgld'].key()[:10]}]" in line
    )
    assert "no similar stored run" in psgld_line
    assert (
        f"Fake GPU: 4 min 05 s for 1 of {missing} runs (from 2 stored runs; "
        f"{missing - 1} without a similar stored run)" in out
    )
    assert "(this machine): no stored timing of a similar run, no estimate" in out


def test_dry_run_with_everything_stored_says_nothing_is_missing(store, capsys):
    for config in select_configs("ci", ["02_mixing"]):
        _plant(config, store, 10.0, "Fake GPU")
    assert main(["fill", "--profile", "ci", "--notebooks", "02_mixing", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "0 missing" in out and "nothing to train" in out
    report = fill_store(select_configs("ci", ["02_mixing"]), log=None)  # trains nothing
    assert report.trained == 0 and report.complete and len(report.stored) == len(report.configs)


def test_the_cost_model_groups_by_method_convention_size_and_epochs_per_device(store):
    (config, *_) = select_configs("ci", ["02_mixing"])
    _plant(config.replace(seed=3), store, 30.0, "A")
    _plant(config.replace(seed=4), store, 50.0, "B")
    model = CostModel.from_store("ci", store)
    assert model.seconds(config, "A") == 30.0 and model.seconds(config, "B") == 50.0
    assert model.seconds(config.replace(epochs=config.epochs + 1), "A") is None
    other_evaluation = config.replace(eval_every=config.eval_every + 1)
    assert model.seconds(other_evaluation, "A") is None
    assert model.seconds(other_evaluation, "A", loose=True) == 30.0
    # a run stored before PGD existed (robustness_size 0) does not time one that asks for it
    with_pgd = config.replace(robustness_size=config.robustness_size + 100)
    assert model.seconds(with_pgd, "A") is None
    assert model.seconds(with_pgd, "A", loose=True) == 30.0
    assert sorted(model.devices()) == ["A", "B"]
    assert [format_duration(s) for s in (5, 192, 3900, 90000)] == [
        "5 s",
        "3 min 12 s",
        "1 h 05 min",
        "1 d 01 h",
    ]


def test_write_missing_lists_the_keys_the_store_lacks(store, tmp_path, capsys):
    configs = select_configs("ci", ["02_mixing"])
    _plant(configs[0], store, 10.0, "Fake GPU")
    out = tmp_path / "keys.txt"
    assert (
        main(["fill", "--profile", "ci", "--notebooks", "02_mixing", "--write-missing", str(out)])
        == 0
    )
    assert out.read_text().split() == [c.key() for c in configs[1:]]
    assert [c.key() for c in survey(configs).missing] == out.read_text().split()


@pytest.mark.parametrize(
    "argv",
    [
        ["--notebooks", "99_nothing"],
        ["--workers", "2"],
        ["--engine", "processes", "--address", "127.0.0.1:1"],
        ["--engine", "processes", "--workers", "0"],
        ["--train-size", "abc"],
        ["--device", "tpu"],
        ["--profile", "nope"],
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(argv, capsys):
    assert main(["fill", "--profile", "ci", *argv, "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ")


# --------------------------------------------------------------------------- engines, locks
@pytest.mark.parametrize("engine", ["serial", pytest.param("processes", marks=pytest.mark.slow)])
def test_independent_trials_run_once_each_in_order_of_their_fields(engine):
    seen = []
    outcomes = run_trials(
        [{"x": x} for x in range(5)],
        square,
        engine,
        workers=2,
        on_record=lambda i, outcome: seen.append(i),
    )
    assert [o.get("y") for o in outcomes] == [0, 1, 4, None, 16]
    assert outcomes[3]["status"] == "failed" and "planted failure" in outcomes[3]["reason"]
    assert sorted(seen) == [0, 1, 2, 3, 4]
    pids = {o["pid"] for o in outcomes if "pid" in o}
    assert (pids == {os.getpid()}) == (engine == "serial")


@pytest.mark.slow
def test_a_dead_worker_process_s_trial_is_started_again(tmp_path):
    from sgmcmc_paper.sweep.engines import RayOptions

    retried = []
    outcomes = run_trials(
        [{"x": x, "dir": str(tmp_path)} for x in range(3)],
        die_once,
        "processes",
        workers=1,
        ray=RayOptions(max_failures=1),
        on_retry=lambda i, reason: retried.append((i, reason)),
    )
    assert [o["y"] for o in outcomes] == [0, 1, 2]
    assert retried == [(1, "a worker process died; started again (1 time(s) so far)")]


def test_the_store_s_key_lock_excludes_other_processes(tmp_path):
    """The flock the store takes per key (``run_or_load``) holds between processes."""
    import multiprocessing

    lock, log = tmp_path / ".locks" / "k.lock", tmp_path / "log"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=hold, args=(str(lock), 0.5, str(log))) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    events = [line.split()[0] for line in log.read_text().splitlines()]
    assert events == ["in", "out"] * 3  # never two inside at once


# --------------------------------------------------------------------------- a Ray cluster
WAIT_FOR_NODES = """
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
deadline = time.time() + 120
while sum(n["Alive"] for n in ray.nodes()) < 2 or ray.cluster_resources().get("CPU", 0) < 2:
    if time.time() > deadline:
        sys.exit("the second Ray node did not join")
    time.sleep(0.5)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """Two Ray nodes on this machine, each a ``ray start --block`` in a session of its own, so
    that teardown ends exactly their processes (never ``ray stop``, which ends every Ray on the
    machine)."""

    def __init__(self, temp_dir: Path, env: dict[str, str]) -> None:
        self.env = env
        ray_cli = Path(sys.executable).with_name("ray")
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        common = [
            "--num-cpus=1",
            "--num-gpus=0",
            "--node-ip-address=127.0.0.1",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
            "--block",
        ]
        head = [str(ray_cli), "start", "--head", f"--port={self.port}", "--include-dashboard=false"]
        self.nodes = [self._start(head + common, temp_dir / "head.log")]
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.nodes[0].poll() is not None:
                    raise RuntimeError(f"the Ray head did not start: {temp_dir}/head.log") from None
                time.sleep(0.3)
        other = [str(ray_cli), "start", f"--address={self.address}"]
        self.nodes.append(self._start(other + common, temp_dir / "node.log"))

    def _start(self, argv: list[str], log: Path) -> subprocess.Popen:
        with open(log, "w") as out:
            return subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
            )

    def wait(self) -> None:
        subprocess.run(
            [sys.executable, "-c", WAIT_FOR_NODES, self.address],
            env=self.env,
            check=True,
            timeout=180,
        )

    def stop(self) -> None:
        for node in self.nodes:
            try:
                os.killpg(node.pid, signal.SIGKILL)  # the node's own session: its processes
            except ProcessLookupError:
                pass
            node.wait(30)


def _lock_holder(lock: Path) -> int | None:
    """The pid holding an flock on ``lock`` (from /proc/locks), else ``None``."""
    try:
        inode = os.stat(lock).st_ino
    except FileNotFoundError:
        return None
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "FLOCK" in fields and int(fields[5].rsplit(":", 1)[-1]) == inode:
            return int(fields[4])
    return None


def _kill_after_first_checkpoint(profile_dir: Path, fill: subprocess.Popen, killed: list) -> None:
    """Kill (SIGKILL) the Ray worker running the first run that saves a checkpoint."""
    while fill.poll() is None and not killed:
        for checkpoint in (profile_dir / ".checkpoints").glob("*.pt"):
            key = checkpoint.stem.split("-")[0]  # <key>[-<evaluation>]: store.checkpoint_path
            pid = _lock_holder(profile_dir / ".locks" / f"{key}.lock")
            if pid is None:
                continue
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            assert title.startswith("ray::"), title  # a Ray worker, never anything else
            os.kill(pid, signal.SIGKILL)
            killed.append(key)
            return
        time.sleep(0.05)


def _same_results(a: Path, b: Path, key: str) -> None:
    first, second = (json.loads((root / key / RUN_FILE).read_text()) for root in (a, b))
    for record in (first, second):
        for epoch in record["metrics"]["epochs"]:
            epoch.pop("wall_s")  # wall time, not a result
        # SGD's and FSGD's configs are one run (one key), stored with the method that asked for
        # it first: the fill's trial or a run needing it as its transfer source (#27).
        record["config"].pop("method")
    for field in ("status", "config", "metrics", "divergence", "skipped", "notes"):
        assert first[field] == second[field], (key, field)
    with np.load(a / key / "predictions.npz") as x, np.load(b / key / "predictions.npz") as y:
        assert sorted(x.files) == sorted(y.files)
        for name in x.files:
            assert np.array_equal(x[name], y[name]), (key, name)


def _stamps(profile_dir: Path) -> dict[str, int]:
    return {
        str(path.relative_to(profile_dir)): path.stat().st_mtime_ns
        for path in sorted(profile_dir.glob("*/*"))
    }


@pytest.mark.slow
def test_a_fill_through_a_two_node_ray_cluster_survives_a_killed_worker(tmp_path_factory):
    pytest.importorskip("ray")
    if not Path("/proc/locks").exists() or not Path(sys.executable).with_name("ray").exists():
        pytest.skip("needs Linux's /proc/locks and the ray command of this environment")
    from sgmcmc_paper.data.mnist import cache_file

    if not cache_file().exists():
        pytest.skip("MNIST is not in the dataset cache; run `sgmcmc data` to enable this test")
    base = tmp_path_factory.mktemp("fill")
    temp_dir = tmp_path_factory.mktemp("ray")  # short: Ray's socket paths must fit 107 bytes
    if len(str(temp_dir)) > 40:
        temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    data = str(data_dir().resolve())
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_USAGE_STATS_ENABLED": "0",
        "SGMCMC_DATA": data,
        "SGMCMC_RESULTS": str(base / "ray"),
    }
    configs = select_configs("ci", NOTEBOOKS)
    keys = sorted(c.key() for c in configs)
    cluster = Cluster(temp_dir, env)
    try:
        # The serial fill, in this process, while the cluster starts.
        environment = {name: os.environ.get(name) for name in ("SGMCMC_RESULTS", "SGMCMC_DATA")}
        serial = fill_store(configs, engine="serial", threads=1, root=base / "serial", log=None)
        assert serial.trained == len(keys) and serial.complete
        assert {name: os.environ.get(name) for name in environment} == environment
        cluster.wait()
        argv = [sys.executable, "-m", "sgmcmc", "fill", "--profile", "ci", "--notebooks"]
        argv += [*NOTEBOOKS, "--address", cluster.address, "--checkpoint-every", "0"]
        started = time.time()
        fill = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        killed: list[str] = []
        profile_dir = base / "ray" / "ci"
        killer = threading.Thread(
            target=_kill_after_first_checkpoint, args=(profile_dir, fill, killed)
        )
        killer.start()
        out = fill.communicate(timeout=600)[0].decode()
        killer.join()
        seconds = time.time() - started
        assert fill.returncode == 0, out
        assert killed, f"no run saved a checkpoint before the fill ended:\n{out}"
        (victim,) = killed
        # The victim resumes from its checkpoint: in its retried trial, or first in the trial of
        # a run of its seed that needs it as the source of its transfer attacks
        # (store.run_or_load), which then stores it "meanwhile".
        assert "its Ray worker died" in out, out
        # Every run stored once, trained once; nothing half written is left.
        stored = sorted(p.parent.name for p in profile_dir.glob(f"*/{RUN_FILE}"))
        assert stored == keys
        assert sorted(p.name for p in profile_dir.iterdir() if p.name.startswith(".")) == [
            ".checkpoints",
            ".locks",
        ]
        assert not list((profile_dir / ".checkpoints").iterdir())
        done = [line for line in out.splitlines() if " trained in " in line or "meanwhile" in line]
        assert sorted(k for k in keys for line in done if f"[{k[:10]}]" in line) == keys
        resumed = {
            k: json.loads((profile_dir / k / RUN_FILE).read_text())["provenance"]["timing"][
                "resumed"
            ]
            for k in keys
        }
        assert resumed == {k: int(k == victim) for k in keys}
        # A rerun through the cluster trains nothing and touches nothing.
        before = _stamps(profile_dir)
        rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stdout + rerun.stderr
        assert f"{len(keys)} runs: {len(keys)} were stored, 0 trained" in rerun.stdout
        assert _stamps(profile_dir) == before
        # The same results as the serial fill, bit for bit.
        for key in keys:
            _same_results(base / "serial" / "ci", profile_dir, key)
        print(f"Ray fill with a killed worker: {seconds:.0f} s; serial: {serial.seconds:.0f} s")
    finally:
        cluster.stop()
