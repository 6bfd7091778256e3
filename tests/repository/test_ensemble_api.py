"""Ensembles from Python: tensor handles, wiring, export, every refusal, scan and repo check."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from headrace.cli import main
from headrace.config import parse_config
from headrace.errors import InvalidConfig
from headrace.repository import ModelEntry, ModelRepository, TensorHandle
from headrace.repository.example_sources import IDENTITY_MODEL
from headrace.types import DataType

Tensors = Sequence[tuple[str, str, Sequence[int]]]


def python_model(
    repo: ModelRepository,
    name: str,
    inputs: Tensors,
    outputs: Tensors,
    *,
    max_batch_size: int = 8,
) -> ModelEntry:
    """A python-backend model with the given tensors (its model.py is never run here)."""
    entry = repo.add(
        name, backend="python", max_batch_size=max_batch_size, inputs=inputs, outputs=outputs
    )
    entry.add_version_file(1, "model.py", IDENTITY_MODEL.encode())
    return entry


def written(entry: ModelEntry) -> model_config_pb2.ModelConfig:
    text = entry.storage.read_bytes(entry.name, "config.pbtxt").decode()
    return parse_config(text, entry.config_path)


def steps(config: model_config_pb2.ModelConfig) -> list[tuple[str, int, dict, dict]]:
    return [
        (s.model_name, s.model_version, dict(s.input_map), dict(s.output_map))
        for s in config.ensemble_scheduling.step
    ]


def tensors(items) -> list[tuple[str, str, list[int]]]:  # type: ignore[no-untyped-def]
    return [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in items]


@pytest.fixture
def repo(tmp_path: Path) -> ModelRepository:
    return ModelRepository(tmp_path / "models")


def assert_nothing_written(ensemble: ModelEntry, before: bytes) -> None:
    assert ensemble.storage.read_bytes(ensemble.name, "config.pbtxt") == before
    assert ensemble.available_versions() == []


# -- the seed example -------------------------------------------------------------------------


def test_the_seed_example_works_as_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")

    class NoiseRemover(torch.nn.Module):
        def forward(self, noisy):  # type: ignore[no-untyped-def]
            return noisy - noisy.mean(dim=-1, keepdim=True)

    class Classifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(2 * 1024, 3)

        def forward(self, x):  # type: ignore[no-untyped-def]
            return self.linear(x.flatten(1))

    root = tmp_path / "models"
    repo = ModelRepository(root)
    noise = repo.add("noise_remover", max_batch_size=8)
    noise.export_version(
        NoiseRemover(), input_shapes={"noisy": (None, 2, 1024)}, output_names=["cleaned"]
    )
    clf = repo.add("classifier", max_batch_size=8)
    clf.export_version(Classifier(), input_shapes={"x": (None, 2, 1024)}, output_names=["y"])
    e = repo.add("end-to-end", platform="ensemble")
    e.add_input(noise.inputs["noisy"])
    e.pipe(noise.outputs["cleaned"], clf.inputs["x"])
    e.add_output(clf.outputs["y"])
    assert e.export_version(None) == 1

    config = written(e)
    assert (config.name, config.platform, config.backend) == ("end-to-end", "ensemble", "")
    assert config.max_batch_size == 8  # from its steps
    assert tensors(config.input) == [("noisy", "TYPE_FP32", [2, 1024])]
    assert tensors(config.output) == [("y", "TYPE_FP32", [3])]
    assert steps(config) == [
        ("noise_remover", -1, {"noisy": "noisy"}, {"cleaned": "noise_remover.cleaned"}),
        ("classifier", -1, {"x": "noise_remover.cleaned"}, {"y": "y"}),
    ]
    version_dir = root / "end-to-end" / "1"
    assert version_dir.is_dir() and list(version_dir.iterdir()) == []

    report = repo.scan()
    assert report.ok, [str(p) for p in report.problems]
    assert report.names() == ["classifier", "end-to-end", "noise_remover"]
    assert e.completed_config().platform == "ensemble"
    assert [t.name for t in e.inputs] == ["noisy"] and e.outputs["y"].dims == (3,)
    assert main(["repo", "check", str(root)]) == 0
    assert "no problems" in capsys.readouterr().out


# -- tensor handles ---------------------------------------------------------------------------


def test_handles_come_from_the_completed_config(repo: ModelRepository) -> None:
    model = python_model(
        repo, "m", [("a", "FP32", [4]), ("b", "INT64", [-1, 2])], [("c", "FP32", [4])]
    )
    a = model.inputs["a"]
    assert a == TensorHandle("m", "a", "input", DataType.FP32, (4,), batched=True)
    assert a.shape == (-1, 4) and str(a) == "input 'a' of model 'm'"
    assert [h.name for h in model.inputs] == model.inputs.names() == ["a", "b"]
    assert len(model.outputs) == 1 and "c" in model.outputs and "a" not in model.outputs
    assert model.outputs["c"].kind == "output"
    with pytest.raises(KeyError, match=r"model 'm' has no input 'z' \(inputs: \['a', 'b'\]\)"):
        model.inputs["z"]


def test_handles_of_a_model_without_versions_come_from_its_config(
    repo: ModelRepository,
) -> None:
    entry = repo.add("later", backend="python", inputs=[("x", "FP32", [2])], outputs=[])
    assert entry.inputs["x"].dims == (2,) and not entry.inputs["x"].batched
    assert len(entry.outputs) == 0


# -- wiring -----------------------------------------------------------------------------------


def test_fan_out_and_fan_in(repo: ModelRepository) -> None:
    split = python_model(repo, "split", [("x", "FP32", [4])], [("a", "FP32", [4])])
    left = python_model(repo, "left", [("in", "FP32", [4])], [("l", "FP32", [4])])
    right = python_model(
        repo, "right", [("in", "FP32", [4]), ("raw", "FP32", [4])], [("r", "FP32", [4])]
    )
    join = python_model(
        repo, "join", [("l", "FP32", [4]), ("r", "FP32", [4])], [("out", "FP32", [4])]
    )
    e = repo.add("fan", platform="ensemble")
    assert e.add_input(split.inputs["x"]) == "x"
    assert e.add_input(right.inputs["raw"], name="x") == "x"  # one ensemble input, two steps
    assert e.pipe(split.outputs["a"], left.inputs["in"]) == "split.a"
    assert e.pipe(split.outputs["a"], right.inputs["in"]) == "split.a"  # fan-out
    e.pipe(left.outputs["l"], join.inputs["l"])  # fan-in: join reads from left and right
    e.pipe(right.outputs["r"], join.inputs["r"])
    assert e.add_output(join.outputs["out"], name="result") == "result"
    e.export_version(None)

    config = written(e)
    assert tensors(config.input) == [("x", "TYPE_FP32", [4])]
    assert tensors(config.output) == [("result", "TYPE_FP32", [4])]
    assert steps(config) == [
        ("split", -1, {"x": "x"}, {"a": "split.a"}),
        ("right", -1, {"in": "split.a", "raw": "x"}, {"r": "right.r"}),  # made before left
        ("left", -1, {"in": "split.a"}, {"l": "left.l"}),
        ("join", -1, {"l": "left.l", "r": "right.r"}, {"out": "result"}),
    ]
    assert repo.scan().ok


def test_a_piped_output_can_also_be_an_ensemble_output(repo: ModelRepository) -> None:
    first = python_model(repo, "first", [("x", "FP32", [4])], [("y", "FP32", [4])])
    second = python_model(repo, "second", [("x", "FP32", [4])], [("y", "FP32", [4])])
    e = repo.add("both", platform="ensemble")
    e.add_input(first.inputs["x"])
    e.pipe(first.outputs["y"], second.inputs["x"])
    e.add_output(first.outputs["y"], name="middle")  # the internal tensor is renamed
    e.add_output(second.outputs["y"])
    e.export_version(None)
    assert steps(written(e)) == [
        ("first", -1, {"x": "x"}, {"y": "middle"}),
        ("second", -1, {"x": "middle"}, {"y": "y"}),
    ]
    assert repo.scan().ok


def test_a_model_used_twice_takes_explicit_steps(repo: ModelRepository) -> None:
    denoise = python_model(repo, "denoise", [("x", "FP32", [8])], [("y", "FP32", [8])])
    e = repo.add("twice", platform="ensemble")
    once, again = e.step(denoise), e.step("denoise", version=1)
    assert (once.label, again.label, again.version) == ("denoise", "denoise#2", 1)
    assert again.inputs["x"].step == again.index
    e.add_input(once.inputs["x"])
    e.pipe(once.outputs["y"], again.inputs["x"])
    e.add_output(again.outputs["y"])
    e.export_version(None)
    assert steps(written(e)) == [
        ("denoise", -1, {"x": "x"}, {"y": "denoise.y"}),
        ("denoise", 1, {"x": "denoise.y"}, {"y": "y"}),
    ]
    assert repo.scan().ok


def test_batch_size_comes_from_the_steps_or_is_given(repo: ModelRepository) -> None:
    big = python_model(repo, "big", [("x", "FP32", [4])], [("y", "FP32", [4])], max_batch_size=16)
    small = python_model(
        repo, "small", [("x", "FP32", [4])], [("y", "FP32", [4])], max_batch_size=4
    )
    flat = python_model(
        repo, "flat", [("x", "FP32", [-1, 4])], [("y", "FP32", [-1, 4])], max_batch_size=0
    )

    def chain(name: str, *models: ModelEntry, max_batch_size: int | None = None) -> ModelEntry:
        e = repo.add(name, platform="ensemble", max_batch_size=max_batch_size)
        e.add_input(models[0].inputs["x"])
        for before, after in itertools.pairwise(models):
            e.pipe(before.outputs["y"], after.inputs["x"])
        e.add_output(models[-1].outputs["y"])
        e.export_version(None)
        return e

    smallest = written(chain("smallest", big, small))
    assert smallest.max_batch_size == 4 and tensors(smallest.input) == [("x", "TYPE_FP32", [4])]
    mixed = written(chain("mixed", big, flat))  # a step that does not batch: the ensemble neither
    assert mixed.max_batch_size == 0 and tensors(mixed.input) == [("x", "TYPE_FP32", [-1, 4])]
    given = written(chain("given", flat, big, max_batch_size=2))
    assert given.max_batch_size == 2
    assert tensors(given.input) == [("x", "TYPE_FP32", [4])]  # flat's [-1, 4] less its batch
    assert repo.scan().ok


def test_an_exported_ensemble_reopens_and_exports_again(repo: ModelRepository) -> None:
    first = python_model(repo, "first", [("x", "FP32", [4])], [("y", "FP32", [4])])
    second = python_model(repo, "second", [("x", "FP32", [4])], [("y", "FP32", [4])])
    e = repo.add("grow", platform="ensemble")
    e.add_input(first.inputs["x"])
    e.add_output(first.outputs["y"])
    e.export_version(None)

    again = repo["grow"]  # a fresh entry: the wiring is read back from config.pbtxt
    again.pipe(first.outputs["y"], second.inputs["x"])
    again.add_output(second.outputs["y"], name="z")
    with pytest.raises(InvalidConfig, match="overwrite=True"):
        again.export_version(None, version=1)
    assert again.export_version(None, version=1, overwrite=True) == 1
    assert steps(written(again)) == [
        ("first", -1, {"x": "x"}, {"y": "y"}),
        ("second", -1, {"x": "y"}, {"y": "z"}),
    ]
    assert [t.name for t in again.outputs] == ["y", "z"]
    assert repo.scan().ok


def test_an_ensemble_in_a_memory_repository(tmp_path: Path) -> None:
    repo = ModelRepository(f"memory://ens-{uuid.uuid4().hex}/m", cache_dir=str(tmp_path))
    try:
        model = python_model(repo, "m", [("x", "FP32", [4])], [("y", "FP32", [4])])
        e = repo.add("e", platform="ensemble")
        e.add_input(model.inputs["x"])
        e.add_output(model.outputs["y"])
        assert e.export_version(None) == 1
        assert e.available_versions() == [1]
        report = repo.scan()
        assert report.ok, [str(p) for p in report.problems]
    finally:
        repo.delete()


# -- refusals at export: InvalidConfig naming the step and tensor, nothing written ------------


@pytest.fixture
def pair(repo: ModelRepository) -> tuple[ModelEntry, ModelEntry, ModelEntry, bytes]:
    """Models a (x -> y) and b (x, extra -> y), and an empty ensemble over them."""
    a = python_model(repo, "a", [("x", "FP32", [4])], [("y", "FP32", [4]), ("n", "INT32", [4])])
    b = python_model(repo, "b", [("x", "FP32", [4]), ("extra", "FP32", [2])], [("y", "FP32", [4])])
    e = repo.add("e", platform="ensemble")
    return a, b, e, e.storage.read_bytes("e", "config.pbtxt")


def test_an_unconnected_step_input_is_refused(pair) -> None:  # type: ignore[no-untyped-def]
    a, b, e, before = pair
    e.add_input(a.inputs["x"])
    e.pipe(a.outputs["y"], b.inputs["x"])
    e.add_output(b.outputs["y"])
    with pytest.raises(InvalidConfig, match="input 'extra' of step 'b' is not connected") as info:
        e.export_version(None)
    assert info.value.field == "ensemble_scheduling.step"
    assert_nothing_written(e, before)


def test_piped_tensors_with_other_data_types_are_refused(pair) -> None:  # type: ignore[no-untyped-def]
    a, b, e, before = pair
    e.add_input(a.inputs["x"])
    e.add_input(b.inputs["extra"])
    e.pipe(a.outputs["n"], b.inputs["x"])  # INT32 into FP32
    e.add_output(b.outputs["y"])
    with pytest.raises(InvalidConfig) as info:
        e.export_version(None)
    message = str(info.value)
    assert "ensemble tensor 'a.n'" in message and "TYPE_INT32" in message
    assert "TYPE_FP32" in message and "input 'x' of step 1 (model 'b')" in message
    assert info.value.field == "ensemble_scheduling.step[1].input_map[x]"
    assert_nothing_written(e, before)


def test_piped_tensors_with_other_dims_are_refused(repo: ModelRepository) -> None:
    a = python_model(repo, "a", [("x", "FP32", [4])], [("y", "FP32", [4])])
    c = python_model(repo, "c", [("x", "FP32", [8])], [("y", "FP32", [8])])
    e = repo.add("e", platform="ensemble")
    before = e.storage.read_bytes("e", "config.pbtxt")
    e.add_input(a.inputs["x"])
    e.pipe(a.outputs["y"], c.inputs["x"])
    e.add_output(c.outputs["y"])
    with pytest.raises(InvalidConfig, match=r"'a.y': TYPE_FP32 \[-1, 8\] \(input 'x' of step 1"):
        e.export_version(None)
    assert_nothing_written(e, before)


def test_a_cycle_is_refused_naming_its_steps(pair) -> None:  # type: ignore[no-untyped-def]
    a, b, e, before = pair
    e.add_input(b.inputs["extra"])
    e.pipe(a.outputs["y"], b.inputs["x"])
    e.pipe(b.outputs["y"], a.inputs["x"])
    e.add_output(a.outputs["n"])
    with pytest.raises(InvalidConfig, match="has a cycle") as info:
        e.export_version(None)
    assert "step 'b' reads 'a.y' from step 'a'; step 'a' reads 'b.y' from step 'b'" in str(
        info.value
    )
    assert_nothing_written(e, before)


def test_a_batch_size_over_a_steps_is_refused(repo: ModelRepository) -> None:
    a = python_model(repo, "a", [("x", "FP32", [4])], [("y", "FP32", [4])], max_batch_size=8)
    e = repo.add("e", platform="ensemble", max_batch_size=16)
    before = e.storage.read_bytes("e", "config.pbtxt")
    e.add_input(a.inputs["x"])
    e.add_output(a.outputs["y"])
    with pytest.raises(
        InvalidConfig, match=r"allows batches of 16 but step 0 \(model 'a'\) allows only 8"
    ) as info:
        e.export_version(None)
    assert info.value.field == "max_batch_size"
    assert_nothing_written(e, before)


def test_a_batching_ensemble_over_a_flat_vector_is_refused(repo: ModelRepository) -> None:
    flat = python_model(repo, "flat", [("x", "FP32", [4])], [("y", "FP32", [4])], max_batch_size=0)
    e = repo.add("e", platform="ensemble", max_batch_size=4)
    e.add_input(flat.inputs["x"])
    e.add_output(flat.outputs["y"])
    with pytest.raises(InvalidConfig, match=r"step 'flat' does not batch .* max_batch_size=0"):
        e.export_version(None)


def test_an_empty_ensemble_is_refused(pair) -> None:  # type: ignore[no-untyped-def]
    a, _b, e, before = pair
    with pytest.raises(InvalidConfig, match="has no steps"):
        e.export_version(None)
    e.add_input(a.inputs["x"])
    with pytest.raises(InvalidConfig, match="has no outputs"):
        e.export_version(None)
    assert_nothing_written(e, before)


def test_export_rereads_the_composing_models(repo: ModelRepository, pair) -> None:  # type: ignore[no-untyped-def]
    a, _b, e, _before = pair
    e.add_input(a.inputs["x"])
    e.add_output(a.outputs["y"])
    config = a.config  # model 'a' changes after the wiring
    config.proto.output[0].data_type = model_config_pb2.TYPE_INT8
    config.save()
    e.export_version(None)  # the ensemble output takes the type as it is now
    assert tensors(written(e).output) == [("y", "TYPE_INT8", [4])]

    other = repo.add("e2", platform="ensemble")
    other.add_input(a.inputs["x"])
    other.add_output(a.outputs["y"])
    repo.remove("a")
    with pytest.raises(InvalidConfig, match=r"step 0 \(model 'a'\): model 'a' is not a servable"):
        other.export_version(None)
    assert other.available_versions() == []


# -- refusals at once: calls that cannot be recorded --------------------------------------------


def test_handles_of_the_wrong_kind_are_refused(pair) -> None:  # type: ignore[no-untyped-def]
    a, b, e, _ = pair
    with pytest.raises(
        InvalidConfig, match=r"add_input needs a model input .* output 'y' of model 'a'"
    ):
        e.add_input(a.outputs["y"])
    with pytest.raises(InvalidConfig, match="pipe needs a model output"):
        e.pipe(a.inputs["x"], b.inputs["x"])
    with pytest.raises(InvalidConfig, match="pipe needs a model input"):
        e.pipe(a.outputs["y"], b.outputs["y"])
    with pytest.raises(InvalidConfig, match="add_output needs a model output"):
        e.add_output(b.inputs["x"])
    with pytest.raises(InvalidConfig, match="takes tensor handles"):
        e.add_input("x")  # type: ignore[arg-type]


def test_a_step_input_takes_one_tensor(pair) -> None:  # type: ignore[no-untyped-def]
    a, b, e, _ = pair
    e.add_input(b.inputs["x"])
    with pytest.raises(
        InvalidConfig, match="input 'x' of step 'b' is already fed by ensemble tensor 'x'"
    ):
        e.pipe(a.outputs["y"], b.inputs["x"])


def test_ensemble_tensor_names_are_unique(pair) -> None:  # type: ignore[no-untyped-def]
    a, b, e, _ = pair
    e.add_input(a.inputs["x"])
    with pytest.raises(InvalidConfig, match="already has a tensor named 'x'"):
        e.add_output(a.outputs["y"], name="x")
    e.add_output(a.outputs["y"])
    with pytest.raises(InvalidConfig, match="already the ensemble output 'y'"):
        e.add_output(a.outputs["y"], name="again")
    with pytest.raises(InvalidConfig, match="already has a tensor named 'y'"):
        e.add_input(b.inputs["extra"], name="y")


def test_an_ensemble_is_not_its_own_step(pair) -> None:  # type: ignore[no-untyped-def]
    _a, _b, e, _ = pair
    with pytest.raises(InvalidConfig, match="cannot be a step of itself"):
        e.step(e)


def test_ensemble_calls_on_a_plain_model_are_refused(pair) -> None:  # type: ignore[no-untyped-def]
    a, b, _e, _ = pair
    with pytest.raises(InvalidConfig, match=r"'a' is not an ensemble .* platform='ensemble'"):
        a.add_input(b.inputs["x"])
    with pytest.raises(InvalidConfig, match="needs a torch module"):
        a.export_version(None)


def test_an_ensemble_exports_no_module(pair) -> None:  # type: ignore[no-untyped-def]
    _a, _b, e, _ = pair
    with pytest.raises(InvalidConfig, match=r"call export_version\(None\)"):
        e.export_version(object())


def test_an_ensemble_takes_no_tensors_or_backend_in_add(repo: ModelRepository) -> None:
    with pytest.raises(InvalidConfig, match="add_input and add_output"):
        repo.add("e", platform="ensemble", inputs=[("x", "FP32", [1])])


# -- scan checks ensembles against their steps ------------------------------------------------

HAND_WRITTEN = """
name: "hand"
platform: "ensemble"
max_batch_size: 8
input [ {{ name: "x" data_type: {dtype} dims: [ 4 ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] }} ]
ensemble_scheduling {{ step [ {{ model_name: "{model}" model_version: -1
  input_map {{ key: "x" value: "x" }} output_map {{ key: "y" value: "y" }} }} ] }}
"""


@pytest.mark.parametrize(
    ("dtype", "model", "field", "words"),
    [
        ("TYPE_INT32", "a", "ensemble_scheduling.step[0].input_map[x]", "ensemble tensor 'x'"),
        ("TYPE_FP32", "gone", "ensemble_scheduling.step[0].model_name", "model 'gone' is not"),
    ],
)
def test_scan_reports_an_ensemble_that_does_not_fit_its_steps(
    repo: ModelRepository, tmp_path: Path, dtype: str, model: str, field: str, words: str
) -> None:
    python_model(repo, "a", [("x", "FP32", [4])], [("y", "FP32", [4])])
    hand = tmp_path / "models" / "hand"
    (hand / "1").mkdir(parents=True)
    (hand / "config.pbtxt").write_text(HAND_WRITTEN.format(dtype=dtype, model=model))
    report = repo.scan()
    assert report.names() == ["a", "hand"]  # kept: the server refuses it when loading
    [problem] = report.problems
    assert (problem.model, problem.field) == ("hand", field)
    assert words in problem.message and problem.path.endswith("config.pbtxt")


def test_a_refused_call_leaves_the_wiring_as_it_was(pair) -> None:  # type: ignore[no-untyped-def]
    a, b, e, _ = pair
    e.add_input(b.inputs["x"])
    e.add_input(b.inputs["extra"])
    with pytest.raises(InvalidConfig, match="already fed"):
        e.pipe(a.outputs["y"], b.inputs["x"])  # would have made a step 'a' writing 'a.y'
    e.add_output(b.outputs["y"])
    e.export_version(None)
    assert [s[0] for s in steps(written(e))] == ["b"]


def test_a_batch_size_set_in_the_config_is_kept(repo: ModelRepository) -> None:
    a = python_model(repo, "a", [("x", "FP32", [4])], [("y", "FP32", [4])], max_batch_size=8)
    e = repo.add("e", platform="ensemble")
    e.config.set_max_batch_size(2)
    e.add_input(a.inputs["x"])
    e.add_output(a.outputs["y"])
    e.export_version(None)
    assert written(e).max_batch_size == 2
