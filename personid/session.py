"""The one ONNX Runtime session factory (service, export verification and evaluation all open models here)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def open_session(
    path: str | Path, providers: Sequence[str] = (CPU,), threads: int = 0, spin: bool = True
) -> ort.InferenceSession:
    """A session on `path` with every graph optimisation; `threads` 0 lets ORT use one per core.

    `spin=False` makes ORT's idle intra-op threads sleep instead of busy-waiting for the next call: what a
    server wants, whose event loop and decoding threads need those cores between model calls.
    Warnings are silenced (severity 3): ORT logs shape-inference chatter for every exported graph; the providers
    it really uses are read back from the session by whoever needs to know.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
