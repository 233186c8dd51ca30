import pytest
import torch
from flwr.app import Array, ArrayRecord

from fedkd.learning.models import build_model
from fedkd.results.checkpoint import CheckpointError, load_student, student_record


@pytest.mark.parametrize("name, shape", [("cnn-s", (1, 40)), ("resnet8", (3, 8, 8))])
def test_a_kept_student_comes_back_with_every_tensor_equal(name, shape):
    kept, other = build_model(name, shape, 10, 1), build_model(name, shape, 10, 2)
    for model in (kept, other):  # a tensor that is not float32 is kept by name
        model.register_buffer("seen", torch.tensor(3 if model is kept else 0, dtype=torch.int64))
    record = student_record(kept)
    assert sorted(record.keys()) == ["float32", "seen"]
    load_student(other, record)
    for (k, a), (_, b) in zip(kept.state_dict().items(), other.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    x = torch.randn(4, *shape)
    assert torch.equal(kept.eval()(x), other.eval()(x))


def test_a_student_kept_one_array_per_tensor_loads_too():
    kept, other = build_model("cnn-s", (1, 40), 10, 1), build_model("cnn-s", (1, 40), 10, 2)
    load_student(other, ArrayRecord(kept.state_dict()))
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), other.state_dict().values(), strict=True))


def test_a_student_kept_as_one_npy_vector_loads_too():
    kept, other = build_model("cnn-s", (1, 40), 10, 1), build_model("cnn-s", (1, 40), 10, 2)
    flat = torch.cat([t.reshape(-1) for t in kept.state_dict().values()]).detach().numpy()
    load_student(other, ArrayRecord({"float32": Array(flat)}))
    assert all(torch.equal(a, b) for a, b in zip(kept.state_dict().values(), other.state_dict().values(), strict=True))


def test_a_kept_student_of_another_size_is_refused():
    with pytest.raises(CheckpointError, match="3274 weights does not fit a model of 3018"):
        load_student(build_model("cnn-s", (1, 40), 10, 0), student_record(build_model("mlp-s", (1, 40), 10, 0)))
    with pytest.raises(CheckpointError, match="3018 weights does not fit a model of 3274"):
        load_student(build_model("mlp-s", (1, 40), 10, 0), student_record(build_model("cnn-s", (1, 40), 10, 0)))
