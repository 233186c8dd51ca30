"""Bytes on the wire: counted alone or with the records an exchange's messages share
deflated once, a message's count is the same."""

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedkd.knowledge.wire import message_bytes

pytestmark = pytest.mark.usefixtures("run_identity")


def test_shared_records_are_counted_in_full_and_deflated_once(monkeypatch):
    run, rnd = ConfigRecord({"clients": 3, "models": "cnn-s"}), ConfigRecord({"server-round": 2})
    teacher = ArrayRecord({"logits": Array(np.arange(40, dtype=np.float32).reshape(4, 10))})
    contents = [{"run": run, "round": rnd, "teacher": teacher} for _ in range(3)]
    contents.append({"run": run, "round": rnd, "teacher": teacher, "own": MetricRecord({"x": 1.0})})
    messages = [Message(RecordDict(c), dst_node_id=1, message_type="train") for c in contents]
    alone = [message_bytes(m) for m in messages]
    deflated = []
    deflate = RecordDict.deflate
    monkeypatch.setattr(RecordDict, "deflate", lambda self: deflated.append(1) or deflate(self))
    known: dict = {}
    assert [message_bytes(m, known) for m in messages] == alone
    assert alone[0] == alone[1] == alone[2] < alone[3]
    assert len(deflated) == 2  # the first three carry the same records under the same names
