"""Decoding in a child process, for decoders that can kill the process that calls them.

gdcm throws C++ exceptions that nothing catches on damaged JPEG, JPEG-LS and JPEG 2000 data:
the process aborts (SIGABRT), whatever Python code surrounds the call. It is also the only
permissively licensed decoder here for JPEG Lossless (Process 14) and JPEG-LS, so it cannot
just be dropped. Its calls therefore run in a small pool of child processes ("spawn": safe in a
threaded viewer, and what a frozen app supports through ``multiprocessing.freeze_support``).
A child that dies becomes a :class:`StudyLoadError` for that file and is replaced on the next
call; one that runs past ``decode_timeout_seconds`` is killed.

Cost (tests/benchmarks/bench_isolated_decode.py): about half a second once, to start a child,
then the decode itself plus a copy of the frame there and of the pixels back.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from radreview.limits import hint, limits

log = logging.getLogger(__name__)
_CONTEXT = multiprocessing.get_context("spawn")
_MAX_IDLE = max(2, min(8, os.cpu_count() or 2))


class DecoderCrashed(Exception):
    """The child process died or was stopped while decoding; ``str()`` says how, in words."""


class DecoderError(Exception):
    """The decoder in the child raised an ordinary error (damaged data it could report)."""


class _Child:
    def __init__(self) -> None:
        parent, child = _CONTEXT.Pipe(duplex=True)
        self.process = _CONTEXT.Process(target=_serve, args=(child,), daemon=True, name="radreview-decoder")
        self.process.start()
        child.close()
        self.connection: Connection = parent

    def call(self, request: tuple, timeout: float) -> Any:
        self.connection.send(request)
        if not self.connection.poll(timeout):
            self.stop()
            raise DecoderCrashed(f"the decoder took longer than {timeout:g} s and was stopped "
                                 f"({hint('decode_timeout_seconds')})")
        try:
            status, value = self.connection.recv()
        except (EOFError, OSError) as exc:
            raise DecoderCrashed(self._death()) from exc
        if status == "error":
            raise DecoderError(value)
        return value

    def _death(self) -> str:
        self.process.join(5)
        code = self.process.exitcode
        self.stop()
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the decoder crashed on this file ({name}); the pixel data is damaged"
        return f"the decoder process ended unexpectedly (exit code {code}); the pixel data is likely damaged"

    def alive(self) -> bool:
        return self.process.is_alive()

    def stop(self) -> None:
        try:
            self.connection.close()
        except OSError:
            pass
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)


_idle: list[_Child] = []
_lock = threading.Lock()


def decode_frame(dataset: Any, plugin: str, timeout: float | None = None) -> np.ndarray:
    """``pydicom.pixels.pixel_array(dataset, index=0, decoding_plugin=plugin)`` in a child process.

    ``dataset`` holds one frame (see :func:`radreview.studies.pixels.single_frame_dataset`).
    Raises :class:`DecoderCrashed` if the child dies or times out, :class:`DecoderError` if the
    decoder raised.
    """
    timeout = float(limits().decode_timeout_seconds if timeout is None else timeout)
    child = _take_idle() or _Child()
    try:
        result = child.call(("decode", dataset, plugin), timeout)
    except DecoderError:
        _give_back(child)
        raise
    except DecoderCrashed:
        raise  # the child is gone; the next call starts another
    except BaseException:
        child.stop()  # interrupted mid-call: its answer would go to the next caller
        raise
    _give_back(child)
    return result


def _take_idle() -> _Child | None:
    with _lock:
        while _idle:
            child = _idle.pop()
            if child.alive():
                return child
            child.stop()
    return None


def _give_back(child: _Child) -> None:
    with _lock:
        if len(_idle) < _MAX_IDLE and child.alive():
            _idle.append(child)
            return
    child.stop()


def shut_down() -> None:
    """Stop the idle children (they are daemons, so they also end with the process)."""
    with _lock:
        children, _idle[:] = list(_idle), []
    for child in children:
        child.stop()


def _silence_native_stderr() -> None:
    # libjpeg's warnings and the C++ runtime's "terminate called..." would land in the user's
    # terminal; what went wrong reaches the parent through the pipe, and the parent names the file.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass


def _serve(connection: Connection) -> None:
    """The child's loop: one request at a time until the parent closes the pipe."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the parent's to handle
    _silence_native_stderr()
    from pydicom.pixels import pixel_array

    while True:
        try:
            kind, dataset, plugin = connection.recv()
        except (EOFError, OSError):
            return
        try:
            if kind != "decode":
                raise ValueError(f"unknown request {kind!r}")
            answer: tuple[str, Any] = ("ok", pixel_array(dataset, index=0, decoding_plugin=plugin))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which names the file
            answer = ("error", f"{type(exc).__name__}: {exc}")
        connection.send(answer)
