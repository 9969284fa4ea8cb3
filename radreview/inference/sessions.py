"""ONNX Runtime sessions: which execution provider, with which options, and what actually ran.

"auto" tries the accelerators this onnxruntime build offers (CUDA, DirectML, CoreML) in that
order and falls back to the CPU when none starts. CUDA counts as offered only when the CUDA driver
sees a GPU: an onnxruntime-gpu build lists CUDAExecutionProvider on any machine, and trying it
on one without a GPU costs seconds and a warning for nothing. A named provider that is missing or fails also
falls back to the CPU, and the returned note says so in words: the UI and the CLI show it, and
results record the provider that really ran (``session.get_providers()[0]``).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
from dataclasses import dataclass
from functools import lru_cache

import onnxruntime as ort

log = logging.getLogger(__name__)

# user-facing name -> onnxruntime provider
PROVIDERS: dict[str, str] = {
    "cuda": "CUDAExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
PROVIDER_CHOICES = ("auto", *PROVIDERS)
_ACCELERATORS = ("cuda", "directml", "coreml")


class ProviderError(RuntimeError):
    """A session could not be created on any provider."""


@dataclass(frozen=True)
class SessionInfo:
    provider: str  # the one that runs: "cpu", "cuda", ...
    requested: str
    note: str = ""  # why it is not the one requested, empty when it is


@lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """GPUs the CUDA driver sees; 0 without a driver (ctypes on the driver library, no CUDA toolkit)."""
    names = ("nvcuda.dll",) if sys.platform == "win32" else ("libcuda.so.1", "libcuda.so")
    for name in names:
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        try:
            if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
        except AttributeError:  # not the CUDA driver after all
            return 0
        return int(count.value)
    return 0


def available_providers(offered: list[str] | None = None) -> list[str]:
    """The user-facing names of the providers this onnxruntime build offers (``offered``: its
    provider list, default ``ort.get_available_providers()``) and this machine can run, best first."""
    names = set(ort.get_available_providers() if offered is None else offered)
    if PROVIDERS["cuda"] in names and cuda_device_count() == 0:
        names.discard(PROVIDERS["cuda"])
    return [name for name in (*_ACCELERATORS, "cpu") if PROVIDERS[name] in names]


def short_name(ort_provider: str) -> str:
    return next((k for k, v in PROVIDERS.items() if v == ort_provider), ort_provider)


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """CPU-friendly options: all graph optimisations, one intra-op pool sized to the cores."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads if threads and threads > 0 else (os.cpu_count() or 1)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # onnxruntime's own warnings would repeat what the note says
    # Idle pool threads sleep instead of spinning: on a 2-core machine spinning burns the core
    # that decoding (batch) or the event loop (viewer) needs, for no gain in latency.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def _candidates(requested: str, offered: list[str] | None = None) -> tuple[list[str], str]:
    """The providers to try for ``requested``, in order, and a note when it cannot be had."""
    built = ort.get_available_providers() if offered is None else offered
    offered = available_providers(built)
    if requested == "auto":
        return [p for p in _ACCELERATORS if p in offered] + ["cpu"], ""
    if requested not in PROVIDERS:
        raise ProviderError(f"unknown provider {requested!r}; choose one of {', '.join(PROVIDER_CHOICES)}")
    if requested not in offered:
        where = ("on this machine (the CUDA driver sees no GPU)"
                 if requested == "cuda" and PROVIDERS["cuda"] in built
                 else "in this onnxruntime build")
        note = f"provider {requested!r} is not available {where} (available: {', '.join(offered)}); running on the CPU"
        return ["cpu"], note
    return ([requested, "cpu"] if requested != "cpu" else ["cpu"]), ""


def create_session(
    model: str | os.PathLike | bytes, provider: str = "auto", threads: int | None = None
) -> tuple[ort.InferenceSession, SessionInfo]:
    """A session on the best provider that starts, and what ran.

    Each accelerator is tried on its own (with the CPU behind it for unsupported operators); if
    creating it raises, or onnxruntime silently dropped it, the next candidate is tried.
    """
    candidates, note = _candidates(provider)
    problems: list[str] = []
    source = os.fspath(model) if not isinstance(model, bytes) else model
    for name in candidates:
        chain = [PROVIDERS[name]] + ([PROVIDERS["cpu"]] if name != "cpu" else [])
        try:
            session = ort.InferenceSession(source, sess_options=session_options(threads), providers=chain)
        except Exception as exc:  # a provider library that fails to load raises here
            problems.append(f"{name}: {exc}".splitlines()[0])
            log.warning("could not start provider %s: %s", name, exc)
            continue
        ran = short_name(session.get_providers()[0])
        if ran != name:
            problems.append(f"{name}: onnxruntime could not start it")
            if name != "cpu":
                continue
        if ran != provider and provider != "auto" and not note:
            note = f"provider {provider!r} failed ({'; '.join(problems)}); running on {ran}"
        elif provider == "auto" and problems:
            note = f"running on {ran} ({'; '.join(problems)})"
        return session, SessionInfo(provider=ran, requested=provider, note=note)
    raise ProviderError(f"no execution provider could run the model: {'; '.join(problems)}")
