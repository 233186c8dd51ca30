"""Knowledge payloads: what crosses the wire, and the checks every reply must pass.

Logits travel, not probabilities: a receiver can soften logits at any temperature,
and FedMD's consensus is a mean of class scores. Every payload is indexed by public
sample ids, so a reply can be checked against the ids the server asked for.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord

IDS, LOGITS = "ids", "logits"


class KnowledgeError(ValueError):
    """A reply that must not be aggregated; the message says why."""


def pack(ids: np.ndarray, logits: np.ndarray) -> ArrayRecord:
    """Logits on public ids as an ArrayRecord (ids int32, logits float32)."""
    return ArrayRecord({
        IDS: Array(np.ascontiguousarray(ids, dtype=np.int32)),
        LOGITS: Array(np.ascontiguousarray(logits, dtype=np.float32)),
    })


def pack_ids(ids: np.ndarray) -> ArrayRecord:
    return ArrayRecord({IDS: Array(np.ascontiguousarray(ids, dtype=np.int32))})


def unpack_ids(record: ArrayRecord) -> np.ndarray:
    return record[IDS].numpy().astype(np.int64)


def unpack(record: ArrayRecord) -> tuple[np.ndarray, np.ndarray]:
    return unpack_ids(record), record[LOGITS].numpy()


def validate(record: ArrayRecord, expected_ids: np.ndarray, num_classes: int) -> np.ndarray:
    """Return the reply's logits if it is exactly knowledge on ``expected_ids``; else raise."""
    if set(record.keys()) != {IDS, LOGITS}:
        raise KnowledgeError(f"expected arrays {{{IDS!r}, {LOGITS!r}}}, got {sorted(record.keys())}")
    ids, logits = unpack(record)
    if not np.array_equal(ids, expected_ids):
        raise KnowledgeError("ids differ from the public ids of the round")
    if logits.shape != (len(expected_ids), num_classes):
        raise KnowledgeError(f"logits shape {logits.shape}, expected {(len(expected_ids), num_classes)}")
    if logits.dtype != np.float32:
        raise KnowledgeError(f"logits dtype {logits.dtype}, expected float32")
    if not np.isfinite(logits).all():
        raise KnowledgeError("logits hold NaN or infinite values")
    return logits
