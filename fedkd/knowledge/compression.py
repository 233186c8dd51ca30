"""Compressed knowledge for constrained uplinks (``--compression``).

What a client uploads, and what the server turns it back into before validation:

- ``none``: float32 logits.
- ``fp16``: float16 logits, half the bytes (about three significant digits).
- ``int8``: per row, an affine 8-bit code: ``q`` in 0..255 (uint8) with the row's
  minimum ``lo`` and ``step`` (float32), so z ≈ lo + q · step; a quarter of the
  bytes plus 8 per row, error at most step / 2.
- ``top-k``: per row the ``top-k`` largest logits (float16) and their classes
  (uint8), plus the mean of the others (float16); the server fills the other
  classes with that mean, so the leading soft labels survive and the rest share
  what is left evenly.

Decoding checks the arrays a scheme must carry, their dtypes and shapes, and class
indices in range; the usual checks of ``fedkd.knowledge.payload`` follow on the result.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

from fedkd.config import Registry
from fedkd.knowledge.payload import IDS, LOGITS, KnowledgeError, pack, values

SCHEMES = Registry("compression", ("none", "fp16", "int8", "top-k"))
LEVELS = 255  # int8: codes 0..255 in a uint8


def _record(ids: np.ndarray, **arrays: np.ndarray) -> ArrayRecord:
    record = ArrayRecord({IDS: Array(np.ascontiguousarray(ids, dtype=np.int32))})
    for key, value in arrays.items():
        record[key] = Array(np.ascontiguousarray(value))
    return record


def encode(ids: np.ndarray, logits: np.ndarray, scheme: str, top_k: int) -> ArrayRecord:
    """The upload of ``logits`` (rows: ``ids``) under ``scheme``."""
    z = np.asarray(logits, dtype=np.float32)
    if scheme == "none":
        return pack(ids, z)
    if scheme == "fp16":
        return _record(ids, **{LOGITS: z.astype(np.float16)})
    if scheme == "int8":
        lo = z.min(axis=1)
        step = np.maximum(z.max(axis=1) - lo, 1e-12) / LEVELS
        q = np.rint((z - lo[:, None]) / step[:, None]).clip(0, LEVELS).astype(np.uint8)
        return _record(ids, q=q, lo=lo.astype(np.float32), step=step.astype(np.float32))
    if scheme == "top-k":
        classes = np.argsort(-z, axis=1, kind="stable")[:, :top_k]
        top = np.take_along_axis(z, classes, axis=1)
        rest = (z.sum(axis=1) - top.sum(axis=1)) / max(z.shape[1] - top_k, 1)
        return _record(ids, top=top.astype(np.float16), classes=classes.astype(np.uint8),
                       rest=rest.astype(np.float16))
    raise ValueError(f"unknown compression {scheme!r}; allowed: {', '.join(SCHEMES)}")


def _arrays(record: ArrayRecord, expected: dict[str, type]) -> dict[str, np.ndarray]:
    if set(record.keys()) != {IDS, *expected}:
        raise KnowledgeError(f"expected arrays {sorted({IDS, *expected})}, got {sorted(record.keys())}")
    arrays = {key: values(record[key]) for key in record.keys()}
    for key, dtype in expected.items():
        if arrays[key].dtype != dtype:
            raise KnowledgeError(f"{key} dtype {arrays[key].dtype}, expected {np.dtype(dtype)}")
    n = len(arrays[IDS])
    for key in expected:
        if len(arrays[key]) != n:
            raise KnowledgeError(f"{key} has {len(arrays[key])} rows, expected {n} (one per id)")
    return arrays


def decode(record: ArrayRecord, scheme: str, width: int) -> ArrayRecord:
    """The float32 ids-and-logits record a compressed upload stands for; raises
    KnowledgeError when the record is not a well-formed upload of ``scheme``."""
    if scheme == "none":
        return record
    if scheme == "fp16":
        a = _arrays(record, {LOGITS: np.float16})
        return pack(a[IDS], a[LOGITS].astype(np.float32))
    if scheme == "int8":
        a = _arrays(record, {"q": np.uint8, "lo": np.float32, "step": np.float32})
        return pack(a[IDS], a["lo"][:, None] + a["q"].astype(np.float32) * a["step"][:, None])
    if scheme == "top-k":
        a = _arrays(record, {"top": np.float16, "classes": np.uint8, "rest": np.float16})
        top, classes = a["top"].astype(np.float32), a["classes"].astype(np.int64)
        if top.ndim != 2 or top.shape != classes.shape or top.shape[1] > width:
            raise KnowledgeError(f"top {top.shape} and classes {classes.shape} must be rows of at most "
                                 f"{width} values")
        if classes.size and classes.max() >= width:
            raise KnowledgeError(f"class index {classes.max()} out of range 0..{width - 1}")
        if np.any(np.diff(np.sort(classes, axis=1), axis=1) == 0):
            raise KnowledgeError("a row names the same class twice")
        logits = np.repeat(a["rest"].astype(np.float32)[:, None], width, axis=1)
        np.put_along_axis(logits, classes, top, axis=1)
        return pack(a[IDS], logits)
    raise ValueError(f"unknown compression {scheme!r}; allowed: {', '.join(SCHEMES)}")
