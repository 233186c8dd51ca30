"""Students ready for edge devices: ONNX and TorchScript files, and the figures an
engineer checks before shipping one (bytes, parameters, CPU latency at batch 1, and
whether the exported model computes what the PyTorch one does)."""

from __future__ import annotations

import logging
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from fedkd.learning.models import count_parameters

LATENCY_CALLS = 300
WARM_UP_CALLS = 20
CHECK_BATCH = 64  # samples on which the exported model is compared with PyTorch


def latency_ms(forward: Callable[[], object]) -> float:
    """Median wall time of ``forward()`` (one call on one sample), after a warm-up."""
    times = []
    for i in range(LATENCY_CALLS + WARM_UP_CALLS):
        start = time.perf_counter()
        forward()
        if i >= WARM_UP_CALLS:
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def torch_latency_ms(model: torch.nn.Module, sample: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return latency_ms(lambda: model(sample))


def export(model: torch.nn.Module, inputs: np.ndarray, folder: Path, stem: str) -> dict[str, float | str]:
    """Write ``<stem>.onnx`` (any batch size) and ``<stem>.pt`` (TorchScript) and
    return their sizes, the parameters, latencies at batch 1 and the largest
    difference between onnxruntime's and PyTorch's logits on ``inputs[:64]``."""
    import onnxruntime

    model = model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    one = torch.from_numpy(inputs[:1])
    example = torch.from_numpy(inputs[:2])  # torch.export fixes a dimension it sees as 1
    onnx_path, script_path = folder / f"{stem}.onnx", folder / f"{stem}.pt"
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # notes about torchvision ops it has no use for
    with warnings.catch_warnings(), torch.no_grad():  # one graph: the inference one (GlobalMax's amax)
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(onnx_path), dynamo=True, input_names=["x"], output_names=["logits"],
                          dynamic_shapes=({0: torch.export.Dim("batch")},))
        torch.jit.trace(model, example).save(str(script_path))
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    batch = np.ascontiguousarray(inputs[:CHECK_BATCH])
    with torch.no_grad():
        expected = model(torch.from_numpy(batch)).numpy()
    got = session.run(None, {"x": batch})[0]
    sample = np.ascontiguousarray(inputs[:1])
    return {
        "parameters": count_parameters(model),
        "onnx_file": onnx_path.name, "onnx_bytes": onnx_path.stat().st_size,
        "torchscript_file": script_path.name, "torchscript_bytes": script_path.stat().st_size,
        "max_abs_diff": float(np.abs(got - expected).max()),
        "latency_ms_pytorch": torch_latency_ms(model, one),
        "latency_ms_onnxruntime": latency_ms(lambda: session.run(None, {"x": sample})),
    }
