"""Thinned traces of a run: a fixed subset of weights and function-space quantities.

Every ``trace_every`` steps the recorder keeps ``trace_per_tensor`` entries of every parameter
tensor (every layer's weight and bias is represented; the entries are drawn once with
:data:`TRACE_SEED`, so all runs trace the same weights and seeds can be stacked as chains), the
log-likelihood ``log p(y|x, θ)`` of each probe image (function space, where R-hat across seeds
means something), the minibatch loss and the learning rate.

On disk it is ArviZ's InferenceData layout, written with xarray alone (no ArviZ needed):
``traces.nc`` with groups ``posterior`` (``<layer>.<weight|bias>`` with dims ``(chain, draw,
<name>_index)``, whose coordinate is the flat index into the tensor; ``probe_log_lik`` and
``probe_log_lik_sum``) and ``sample_stats`` (``loss``, ``lr``); one chain, draws labelled by
optimizer step. Without a netCDF-4 engine (h5netcdf or netCDF4: some GPU images lack both) the
same arrays go to ``traces.npz``; :func:`load_traces` reads either and
:func:`sgmcmc_paper.engine.store.load_result` converts the npz when it can.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sgmcmc_paper.errors import DamagedRunError, UserError

TRACE_SEED = 1806_02855
GROUPS = ("posterior", "sample_stats")


def layer_names(model: nn.Module) -> dict[str, str]:
    """Readable names for parameters: ``conv1.weight``, ..., ``fc2.bias`` (by layer type)."""
    names: dict[str, str] = {}
    counts: dict[str, int] = {}
    for module_name, module in model.named_modules():
        own = list(module.named_parameters(recurse=False))
        if not own:
            continue
        kind = {"Conv2d": "conv", "Linear": "fc"}.get(type(module).__name__, "layer")
        counts[kind] = counts.get(kind, 0) + 1
        for pname, _ in own:
            full = f"{module_name}.{pname}" if module_name else pname
            names[full] = f"{kind}{counts[kind]}.{pname}"
    return names


class TraceRecorder:
    """Records traces on the model's device, copied to the host once, at the end."""

    def __init__(
        self, model: nn.Module, per_tensor: int, probe_x: Tensor, probe_y: Tensor, draws: int
    ) -> None:
        rng = np.random.default_rng(TRACE_SEED)
        readable = layer_names(model)
        self.params: list[tuple[str, Tensor, Tensor]] = []
        self.indices: dict[str, np.ndarray] = {}
        for name, p in model.named_parameters():
            k = min(per_tensor, p.numel())
            index = np.sort(rng.choice(p.numel(), size=k, replace=False))
            self.indices[readable[name]] = index
            self.params.append((readable[name], p, torch.as_tensor(index, device=p.device)))
        width = sum(len(i) for i in self.indices.values())
        device = probe_x.device
        self.model, self.probe_x, self.probe_y = model, probe_x, probe_y
        self.weights = torch.empty(draws, width, device=device)
        self.log_lik = torch.empty(draws, len(probe_x), device=device)
        self.loss = torch.empty(draws, device=device)
        self.lr = np.empty(draws)
        self.steps = np.empty(draws, dtype=np.int64)
        self.count = 0

    @torch.no_grad()
    def record(self, step: int, loss: Tensor, lr: float) -> None:
        i = self.count
        self.weights[i] = torch.cat([p.detach().reshape(-1)[idx] for _, p, idx in self.params])
        log_probs = F.log_softmax(self.model(self.probe_x), dim=1)
        self.log_lik[i] = log_probs.gather(1, self.probe_y[:, None]).squeeze(1)
        self.loss[i] = loss.detach()
        self.lr[i], self.steps[i] = lr, step
        self.count += 1

    def state_dict(self) -> dict:
        """The draws recorded so far (to resume an interrupted run)."""
        n = self.count
        return {
            "count": n,
            "weights": self.weights[:n].clone(),
            "log_lik": self.log_lik[:n].clone(),
            "loss": self.loss[:n].clone(),
            "lr": torch.from_numpy(self.lr[:n].copy()),
            "steps": torch.from_numpy(self.steps[:n].copy()),
        }

    def load_state_dict(self, state: dict) -> None:
        n = self.count = int(state["count"])
        self.weights[:n], self.log_lik[:n], self.loss[:n] = (
            state["weights"],
            state["log_lik"],
            state["loss"],
        )
        self.lr[:n], self.steps[:n] = state["lr"].numpy(), state["steps"].numpy()

    def arrays(self, before: int | None = None) -> dict[str, np.ndarray]:
        """Flat arrays, names ``posterior/<var>``, ``sample_stats/<var>``, ``index/<var>``,
        ``draw``; each trace ``(draw, ...)`` (the single chain is added on writing). With
        ``before``, only the draws of earlier steps (a diverged run's finite part)."""
        n = self.count
        if before is not None:
            n = int(np.searchsorted(self.steps[:n], before))
        weights = self.weights[:n].cpu().numpy()
        out: dict[str, np.ndarray] = {"draw": self.steps[:n]}
        start = 0
        for name, index in self.indices.items():
            out[f"posterior/{name}"] = weights[:, start : start + len(index)]
            out[f"index/{name}"] = index
            start += len(index)
        log_lik = self.log_lik[:n].cpu().numpy()
        out["posterior/probe_log_lik"] = log_lik
        out["posterior/probe_log_lik_sum"] = log_lik.sum(axis=1)
        out["sample_stats/loss"] = self.loss[:n].cpu().numpy()
        out["sample_stats/lr"] = self.lr[:n]
        return out


def _netcdf_engine() -> str | None:
    for engine, module in (("h5netcdf", "h5netcdf"), ("netcdf4", "netCDF4")):
        if importlib.util.find_spec(module) is not None:
            return engine
    return None


def datasets_from_arrays(arrays: dict[str, np.ndarray], attrs: dict[str, str]) -> dict:
    """The arrays of :meth:`TraceRecorder.arrays` as xarray Datasets by InferenceData group."""
    import xarray as xr

    draw = arrays["draw"]
    groups: dict[str, dict] = {g: {} for g in GROUPS}
    coords: dict[str, np.ndarray] = {"chain": np.array([0]), "draw": draw}
    for key, values in arrays.items():
        if "/" not in key or key.startswith("index/"):
            continue
        group, name = key.split("/", 1)
        extra = []
        if values.ndim == 2:
            dim = "probe" if name == "probe_log_lik" else f"{name}_index"
            extra = [dim]
            if dim != "probe":
                coords[dim] = arrays[f"index/{name}"]
        groups[group][name] = (["chain", "draw", *extra], values[None])
    if "posterior/probe_log_lik" in arrays:
        coords["probe"] = np.arange(arrays["posterior/probe_log_lik"].shape[1])
    out = {}
    for group, variables in groups.items():
        used = {d for dims, _ in variables.values() for d in dims}
        ds = xr.Dataset(variables, coords={k: v for k, v in coords.items() if k in used})
        ds.attrs.update(attrs)
        out[group] = ds
    return out


def write_traces(folder: Path, arrays: dict[str, np.ndarray], attrs: dict[str, str]) -> Path:
    """Write ``traces.nc`` (or ``traces.npz`` without a netCDF-4 engine); returns the path."""
    engine = _netcdf_engine()
    if engine is None:
        path = folder / "traces.npz"
        np.savez_compressed(path, **arrays)
        return path
    path = folder / "traces.nc"
    for i, (group, ds) in enumerate(datasets_from_arrays(arrays, attrs).items()):
        encoding = {name: {"zlib": True, "complevel": 6, "shuffle": True} for name in ds.data_vars}
        ds.to_netcdf(
            path, group=group, mode="w" if i == 0 else "a", engine=engine, encoding=encoding
        )
    return path


def npz_to_netcdf(npz: Path, attrs: dict[str, str]) -> Path | None:
    """Convert a ``traces.npz`` into ``traces.nc`` beside it (atomically); ``None`` if no
    netCDF-4 engine is installed here either, another process converted it first, or the
    folder is read-only (the npz is then read as it is). An unreadable npz is a
    :class:`~sgmcmc_paper.errors.DamagedRunError` naming the run folder."""
    if _netcdf_engine() is None:
        return None
    try:
        arrays = read_npz_traces(npz)
    except FileNotFoundError:
        return None
    tmp = npz.parent / f".traces-{os.getpid()}.tmp"
    try:
        tmp.mkdir(exist_ok=True)
        target = npz.parent / "traces.nc"
        write_traces(tmp, arrays, attrs).replace(target)
        npz.unlink(missing_ok=True)
    except OSError:
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_npz_traces(npz: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``traces.npz`` (no pickles); ``FileNotFoundError`` when it is absent, a
    :class:`~sgmcmc_paper.errors.DamagedRunError` naming the run folder when unreadable."""
    if not npz.exists():
        raise FileNotFoundError(npz)
    if not zipfile.is_zipfile(npz):
        raise DamagedRunError(npz.parent, f"{npz.name} is not an npz archive (truncated?)")
    try:
        with np.load(npz, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except Exception as exc:  # a bad member: zip, zlib or npy-format errors of every kind
        raise DamagedRunError(npz.parent, f"{npz.name} is unreadable ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 120 characters of it)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:120]}" if lines else type(exc).__name__


def load_traces(folder: Path):
    """The traces of a stored run: ArviZ ``InferenceData`` when ArviZ is installed, else a
    dict of xarray Datasets by group.

    A folder without traces (the run recorded none: ``trace_every=0``, or it diverged before
    its first draw) is a ``ValueError``, as for a run in memory; an unreadable trace file is a
    :class:`~sgmcmc_paper.errors.DamagedRunError` naming the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"run folder {folder} no longer exists (moved or deleted); load it again")
    nc = folder / "traces.nc"
    if nc.exists():
        try:
            try:
                import arviz as az
            except ImportError:
                import xarray as xr

                engine = _netcdf_engine()
                return {g: xr.load_dataset(nc, group=g, engine=engine) for g in GROUPS}
            return az.from_netcdf(nc)
        except Exception as exc:  # h5py, netCDF4 and xarray raise many kinds of errors
            raise DamagedRunError(folder, f"{nc.name} is unreadable ({_reason(exc)})") from None
    try:
        arrays = read_npz_traces(folder / "traces.npz")
    except FileNotFoundError:
        raise ValueError(
            f"run {folder} recorded no traces (trace_every=0, or it diverged before its "
            "first traced step)"
        ) from None
    datasets = datasets_from_arrays(arrays, {})
    try:
        import arviz as az
    except ImportError:
        return datasets
    return az.InferenceData(**datasets)
