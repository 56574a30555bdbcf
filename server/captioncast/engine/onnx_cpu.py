"""An onnxruntime session for the small models that run among the decodes (the turn model,
speaker segmentation, the d-vector speaker encoder): on the CPU, `threads` intra-op
threads (one by default: the scheduler gives each call a worker thread of its own and the
decoder's workers own the other cores), one inter-op thread, sequential."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def cpu_session(path: Path, threads: int = 1) -> Any:
    """An `onnxruntime.InferenceSession` of the model at `path` (its `run` is thread-safe)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=["CPUExecutionProvider"])
