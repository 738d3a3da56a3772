"""The compiled training step (`step_kernel.cpp`): built with the machine's C++ compiler on first use,
cached, and called through ctypes.

A stack's step in PyTorch is about a hundred small operations; at the engine's shapes most of its time
is dispatch and passes over memory, not arithmetic. The compiled step runs forward, loss, backward and
Adam for every model of a stack in one call, so the engine gets near what the core can do. It is built
for the machine it runs on (`-march=native`), once per source and compiler, into the user's cache
(`$WEIGHTZOO_CACHE`, else `$XDG_CACHE_HOME/weightzoo`, else `~/.cache/weightzoo`); concurrent workers
each build to a temporary name and rename, so they never see half a library.

Where no compiler is found (or the build fails), `load()` returns None and the engine takes the
PyTorch step (`mlp.py`, `adam.py`), which computes the same math with other roundings. The two give
other bits, as two CPUs with other vector units do: a dataset's bytes are a function of its config,
seed and the engine build (`build_name()`, recorded in the run's metadata), not of threads, workers
or neighbours in a stack.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import torch

from weightzoo.activations import LEAKY_SLOPE, NAMES
from weightzoo.engine.adam import ADAM_BETAS, ADAM_EPS

SOURCE = Path(__file__).with_name("step_kernel.cpp")
FLAGS = ("-O3", "-march=native", "-std=c++17", "-fPIC", "-shared", "-fno-math-errno", "-ffp-contract=fast")
ACTIVATION_CODES = {name: i for i, name in enumerate(NAMES)}  # the order of step_kernel.cpp's enum
assert tuple(ACTIVATION_CODES) == ("relu", "gelu", "tanh", "sigmoid", "leaky_relu")


class StepArgs(ctypes.Structure):
    """step_kernel.cpp's `StepArgs`, field for field."""

    _fields_ = [
        *((name, ctypes.c_int64) for name in ("models", "depth", "in_dim", "width", "rows", "activation")),
        ("params", ctypes.c_int64),
        *((name, ctypes.c_int64) for name in ("x_stride", "y_stride", "mask_stride")),
        *((name, ctypes.c_void_p) for name in ("flat", "m", "v", "t", "lr", "stepping", "widths")),
        *((name, ctypes.c_void_p) for name in ("x", "y", "mask", "keep", "loss")),
        *((name, ctypes.c_double) for name in ("beta1", "beta2", "eps", "leaky_slope")),
    ]


def _cache_dir() -> Path:
    if os.environ.get("WEIGHTZOO_CACHE"):
        return Path(os.environ["WEIGHTZOO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "weightzoo"


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


@cache
def _compiler_version(compiler: str) -> str:
    out = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0] if out.stdout else compiler


@cache
def build_name() -> str:
    """What trains on the CPU here: 'compiled step <hash> (<compiler>, <machine>)', or 'pytorch step'."""
    compiler = _compiler()
    if load() is None or compiler is None:
        return "pytorch step"
    return f"compiled step {_key(compiler)} ({_compiler_version(compiler)}, {platform.machine()})"


@cache
def _cpu() -> str:
    """What `-march=native` builds for: the CPU's model and feature flags (Linux), else its name."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or platform.machine()
    wanted = ("model name", "flags", "Features", "CPU implementer", "CPU part")
    return repr(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _key(compiler: str) -> str:
    """The build's name: its source, flags, compiler and CPU (a library built for one CPU's vector units
    neither runs nor rounds the same on another's)."""
    build = (FLAGS, _compiler_version(compiler), platform.machine(), _cpu())
    return hashlib.sha256(SOURCE.read_bytes() + repr(build).encode()).hexdigest()[:16]


def _build(compiler: str, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so.tmp")
    os.close(fd)
    try:
        subprocess.run([compiler, *FLAGS, str(SOURCE), "-o", tmp], check=True, capture_output=True, text=True)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@cache
def load() -> ctypes.CDLL | None:
    """The compiled step, built here if need be; None where it cannot be (the PyTorch step trains).

    A build that fails leaves a note beside where the library would be, so that it is said once (by
    the first process that tries) and not tried again by every worker; a new compiler is a new build."""
    compiler = _compiler()
    if compiler is None:
        return None
    target = _cache_dir() / f"step_kernel-{_key(compiler)}.so"
    failed = target.with_suffix(".failed")
    if failed.exists():
        return None
    try:
        if not target.exists():
            _build(compiler, target)
        library = ctypes.CDLL(str(target))
    except (OSError, subprocess.CalledProcessError) as error:
        detail = (getattr(error, "stderr", "") or "").strip().splitlines()
        if isinstance(error, subprocess.CalledProcessError):
            reason = detail[0] if detail else f"exit status {error.returncode}"
        else:
            reason = str(error)
        failed.parent.mkdir(parents=True, exist_ok=True)
        failed.write_text(f"{compiler}: {reason}\n")
        warnings.warn(
            f"the compiled training step did not build with {compiler} ({reason[:200]}); training takes "
            f"the slower PyTorch step (remove {failed} to try again)",
            stacklevel=2,
        )
        return None
    for name in ("wz_step_f32", "wz_step_f64", "wz_logits_f32", "wz_logits_f64"):
        getattr(library, name).argtypes = [ctypes.POINTER(StepArgs)]
        getattr(library, name).restype = None
    return library


def usable(device: torch.device, dtype: torch.dtype) -> bool:
    """Whether the compiled step can train a stack on `device` in `dtype` on this machine."""
    return device.type == "cpu" and dtype in (torch.float32, torch.float64) and load() is not None


def _call(entry: str, flat: torch.Tensor, widths: np.ndarray, x: torch.Tensor, **fields) -> None:
    """Call `entry`'s float32 or float64 version (by `flat`'s dtype) with the stack's sizes, parameters,
    widths and inputs, and the entry's own `fields` (pointers and strides)."""
    library = load()
    assert library is not None
    K, rows, in_dim = x.shape
    assert flat.is_contiguous() and flat.device.type == "cpu" and x.dtype == flat.dtype
    assert x.stride(2) == 1 and x.stride(1) == in_dim
    widths = np.ascontiguousarray(widths, dtype=np.int64)
    args = StepArgs(
        models=K,
        in_dim=in_dim,
        rows=rows,
        params=flat.shape[1],
        x_stride=x.stride(0),
        flat=flat.data_ptr(),
        widths=widths.ctypes.data,
        x=x.data_ptr(),
        leaky_slope=LEAKY_SLOPE,
        **fields,
    )
    getattr(library, f"{entry}_f32" if flat.dtype == torch.float32 else f"{entry}_f64")(ctypes.byref(args))


def step(
    *,
    flat: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    t: torch.Tensor,
    lr: torch.Tensor,
    stepping: np.ndarray,
    widths: np.ndarray,
    x: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    keep: torch.Tensor | None,
    depth: int,
    width: int,
    activation: str,
) -> torch.Tensor:
    """One step of every stepping model, in place on `flat`, `m`, `v` and `t`; each model's summed loss
    over its rows. `x` [K, rows, in], `y` and `mask` [K, rows] may be row slices of larger tensors;
    `keep`: dropout scales [depth, K, rows, width] or None."""
    for tensor in (m, v, t, lr):
        assert tensor.is_contiguous() and tensor.device.type == "cpu"
    assert all(tensor.dtype == flat.dtype for tensor in (m, v, t, lr, y, mask))
    assert y.stride(1) == 1 and mask.stride(1) == 1
    stepping = np.ascontiguousarray(stepping, dtype=np.uint8)
    loss = torch.empty(x.shape[0], dtype=flat.dtype)
    keep = keep.contiguous() if keep is not None else None
    _call(
        "wz_step",
        flat,
        widths,
        x,
        depth=depth,
        width=width,
        activation=ACTIVATION_CODES[activation],
        y_stride=y.stride(0),
        mask_stride=mask.stride(0),
        m=m.data_ptr(),
        v=v.data_ptr(),
        t=t.data_ptr(),
        lr=lr.data_ptr(),
        stepping=stepping.ctypes.data,
        y=y.data_ptr(),
        mask=mask.data_ptr(),
        keep=keep.data_ptr() if keep is not None else None,
        loss=loss.data_ptr(),
        beta1=ADAM_BETAS[0],
        beta2=ADAM_BETAS[1],
        eps=ADAM_EPS,
    )
    return loss


def logits(
    *, flat: torch.Tensor, widths: np.ndarray, x: torch.Tensor, depth: int, width: int, activation: str
) -> torch.Tensor:
    """The logits [K, rows] of the models whose parameters `flat` [K, P] holds, for inputs `x`
    [K, rows, in]: the compiled step's forward pass."""
    x = x.contiguous()
    out = torch.empty(x.shape[:2], dtype=flat.dtype)
    _call(
        "wz_logits",
        flat,
        widths,
        x,
        depth=depth,
        width=width,
        activation=ACTIVATION_CODES[activation],
        y_stride=x.shape[1],
        loss=out.data_ptr(),
    )
    return out
