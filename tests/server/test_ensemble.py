"""Ensembles through the inference core: chains, fan-out and fan-in, nesting, errors, stats.

Every composing model is a Triton python-backend ``model.py`` written here; the ensembles are
Triton ``config.pbtxt`` files, so the same repository would load in Triton.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from server_fakes import run

from headrace.errors import InvalidConfig, InvalidInput, ModelExecutionError
from headrace.server.core import InferenceServer
from headrace.types import InferenceRequest

#: A python model computing each output from the inputs with a numpy expression.
MODEL_PY = """
import numpy as np
import triton_python_backend_utils as pb_utils

OUTPUTS = {outputs!r}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            values = {{t.name(): t.as_numpy() for t in request.inputs()}}
            if (values[next(iter(values))] < 0).any() and {fails_on_negative}:
                raise ValueError("negative input")
            outputs = [
                pb_utils.Tensor(name, np.asarray(eval(expr, {{"np": np}}, values)))
                for name, expr in OUTPUTS.items()
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses
"""


def python_model(
    root: Path,
    name: str,
    inputs: list[str],
    outputs: dict[str, str],
    *,
    dtype: str = "TYPE_FP32",
    fails_on_negative: bool = False,
) -> None:
    """``root/name``: inputs of ``dtype`` [4], each output ``name: numpy expression``."""
    (root / name / "1").mkdir(parents=True)
    tensors = lambda names: ", ".join(  # noqa: E731
        f'{{ name: "{n}" data_type: {dtype} dims: [ 4 ] }}' for n in names
    )
    (root / name / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "python"\nmax_batch_size: 8\n'
        f"input [ {tensors(inputs)} ]\noutput [ {tensors(list(outputs))} ]\n"
    )
    source = MODEL_PY.format(outputs=outputs, fails_on_negative=fails_on_negative)
    (root / name / "1" / "model.py").write_text(textwrap.dedent(source))


def ensemble(
    root: Path,
    name: str,
    inputs: list[str],
    outputs: list[str],
    steps: list[tuple[str, dict[str, str], dict[str, str]]],
    dtype: str = "TYPE_FP32",
) -> None:
    """``root/name``: an ensemble; each step is (model, input_map, output_map)."""
    (root / name / "1").mkdir(parents=True)

    def tensors(names: list[str]) -> str:
        return ", ".join(f'{{ name: "{n}" data_type: {dtype} dims: [ 4 ] }}' for n in names)

    def maps(kind: str, mapping: dict[str, str]) -> str:
        return " ".join(f'{kind} {{ key: "{k}" value: "{v}" }}' for k, v in mapping.items())

    step_text = ", ".join(
        f'{{ model_name: "{model}" model_version: -1 {maps("input_map", i)} '
        f"{maps('output_map', o)} }}"
        for model, i, o in steps
    )
    (root / name / "config.pbtxt").write_text(
        f'name: "{name}"\nplatform: "ensemble"\nmax_batch_size: 8\n'
        f"input [ {tensors(inputs)} ]\noutput [ {tensors(outputs)} ]\n"
        f"ensemble_scheduling {{ step [ {step_text} ] }}\n"
    )


def x(rows: int = 2, start: float = 1.0) -> np.ndarray:
    return (np.arange(rows * 4, dtype=np.float32).reshape(rows, 4) + start).astype(np.float32)


def serve(root: Path, *names: str) -> InferenceServer:
    return InferenceServer(root, model_control_mode="explicit", load_models=names or ["*"])


def test_a_chain_runs_each_step_on_its_own_model(tmp_path: Path) -> None:
    python_model(tmp_path, "double", ["X"], {"Y": "X * 2"})
    python_model(tmp_path, "plus_one", ["X"], {"Y": "X + 1"})
    ensemble(
        tmp_path,
        "chain",
        ["IN"],
        ["OUT"],
        [("double", {"X": "IN"}, {"Y": "mid"}), ("plus_one", {"X": "mid"}, {"Y": "OUT"})],
    )

    async def body() -> None:
        server = serve(tmp_path, "chain")  # explicit mode: the steps load with it
        await server.start()
        assert {e.name: e.state for e in server.repository_index()} == {
            "chain": "READY",
            "double": "READY",
            "plus_one": "READY",
        }
        result = await server.infer(InferenceRequest("chain", {"IN": x()}, id="r1"))
        assert result.id == "r1" and result.model_version == "1"
        np.testing.assert_allclose(result.outputs["OUT"], x() * 2 + 1)
        metadata = server.model_metadata("chain")
        assert metadata.platform == "ensemble"
        (chain,) = server.statistics("chain")
        (double,) = server.statistics("double")
        # As Triton 2.51 reports an ensemble: rows, one execution per request, all of its
        # time as compute_infer; each step model reports its own batches.
        assert (chain.inference_count, chain.execution_count, chain.success.count) == (2, 1, 1)
        assert chain.compute_infer.count == 1 and chain.compute_infer.ns > 0
        assert (double.inference_count, double.execution_count) == (2, 1)
        await server.stop()

    run(body)


def test_fan_out_fan_in_and_an_ensemble_of_ensembles(tmp_path: Path) -> None:
    python_model(tmp_path, "double", ["X"], {"Y": "X * 2"})
    python_model(tmp_path, "triple", ["X"], {"Y": "X * 3"})
    python_model(tmp_path, "add_sub", ["A", "B"], {"SUM": "A + B", "DIFF": "A - B"})
    ensemble(
        tmp_path,
        "diamond",
        ["IN"],
        ["SUM", "DIFF"],
        [
            ("double", {"X": "IN"}, {"Y": "twice"}),
            ("triple", {"X": "IN"}, {"Y": "thrice"}),
            ("add_sub", {"A": "twice", "B": "thrice"}, {"SUM": "SUM", "DIFF": "DIFF"}),
        ],
    )
    ensemble(
        tmp_path,
        "outer",
        ["IN"],
        ["OUT"],
        [("diamond", {"IN": "IN"}, {"SUM": "s"}), ("double", {"X": "s"}, {"Y": "OUT"})],
    )

    async def body() -> None:
        server = serve(tmp_path, "outer")
        await server.start()
        diamond = await server.infer(InferenceRequest("diamond", {"IN": x()}))
        np.testing.assert_allclose(diamond.outputs["SUM"], x() * 5)
        np.testing.assert_allclose(diamond.outputs["DIFF"], -x())
        outer = await server.infer(InferenceRequest("outer", {"IN": x(3)}))
        np.testing.assert_allclose(outer.outputs["OUT"], x(3) * 10)
        await server.stop()

    run(body)


def test_concurrent_requests_overlap_and_keep_their_own_answers(tmp_path: Path) -> None:
    import asyncio

    python_model(tmp_path, "double", ["X"], {"Y": "X * 2"})
    python_model(tmp_path, "plus_one", ["X"], {"Y": "X + 1"})
    ensemble(
        tmp_path,
        "chain",
        ["IN"],
        ["OUT"],
        [("double", {"X": "IN"}, {"Y": "mid"}), ("plus_one", {"X": "mid"}, {"Y": "OUT"})],
    )

    async def body() -> None:
        server = serve(tmp_path, "chain")
        await server.start()
        inputs = [x(1, start=float(10 * i)) for i in range(40)]
        results = await asyncio.gather(
            *(server.infer(InferenceRequest("chain", {"IN": value})) for value in inputs)
        )
        for value, result in zip(inputs, results):
            np.testing.assert_allclose(result.outputs["OUT"], value * 2 + 1)
        await server.stop()

    run(body)


def test_a_failing_step_fails_its_request_naming_the_step(tmp_path: Path) -> None:
    python_model(tmp_path, "fragile", ["X"], {"Y": "X"}, fails_on_negative=True)
    python_model(tmp_path, "double", ["X"], {"Y": "X * 2"})
    ensemble(
        tmp_path,
        "chain",
        ["IN"],
        ["OUT"],
        [("double", {"X": "IN"}, {"Y": "mid"}), ("fragile", {"X": "mid"}, {"Y": "OUT"})],
    )

    async def body() -> None:
        server = serve(tmp_path, "chain")
        await server.start()
        with pytest.raises(
            ModelExecutionError, match=r"ensemble 'chain' step 1 \(model 'fragile'\).*negative"
        ):
            await server.infer(InferenceRequest("chain", {"IN": -x()}))
        ok = await server.infer(InferenceRequest("chain", {"IN": x()}))  # still serving
        np.testing.assert_allclose(ok.outputs["OUT"], x() * 2)
        (stats,) = server.statistics("chain")
        assert stats.success.count == 1 and stats.fail.count == 1
        await server.stop()

    run(body)


def test_mismatched_types_and_unknown_tensors_are_refused_naming_the_step(
    tmp_path: Path,
) -> None:
    python_model(tmp_path, "double", ["X"], {"Y": "X * 2"})
    python_model(tmp_path, "ints", ["X"], {"Y": "X"}, dtype="TYPE_INT32")
    ensemble(
        tmp_path,
        "mixed",
        ["IN"],
        ["OUT"],
        [("double", {"X": "IN"}, {"Y": "mid"}), ("ints", {"X": "mid"}, {"Y": "OUT"})],
    )
    ensemble(tmp_path, "wrong_name", ["IN"], ["OUT"], [("double", {"NOPE": "IN"}, {"Y": "OUT"})])

    async def body() -> None:
        server = serve(tmp_path, "double")
        await server.start()
        with pytest.raises(
            InvalidConfig, match=r"step 1 \(model 'ints'\) input 'X'.*FP32.*expects INT32"
        ):
            await server.load_model("mixed")
        with pytest.raises(InvalidConfig, match=r"step 0 \(model 'double'\).*no input 'NOPE'"):
            await server.load_model("wrong_name")
        assert server.model_ready("double")
        await server.stop()

    run(body)


def test_a_reloaded_step_model_serves_the_next_ensemble_request(tmp_path: Path) -> None:
    python_model(tmp_path, "step", ["X"], {"Y": "X * 2"})
    ensemble(tmp_path, "one", ["IN"], ["OUT"], [("step", {"X": "IN"}, {"Y": "OUT"})])

    async def body() -> None:
        server = serve(tmp_path, "one")
        await server.start()
        first = await server.infer(InferenceRequest("one", {"IN": x()}))
        np.testing.assert_allclose(first.outputs["OUT"], x() * 2)
        model_py = tmp_path / "step" / "1" / "model.py"
        model_py.write_text(model_py.read_text().replace("X * 2", "X * 7"))
        await server.load_model("step")
        second = await server.infer(InferenceRequest("one", {"IN": x()}))
        np.testing.assert_allclose(second.outputs["OUT"], x() * 7)
        await server.unload_model("step")
        with pytest.raises(Exception, match=r"step 0 \(model 'step'\)"):
            await server.infer(InferenceRequest("one", {"IN": x()}))
        await server.stop()

    run(body)


def test_ensemble_inputs_are_validated_like_any_model(tmp_path: Path) -> None:
    python_model(tmp_path, "double", ["X"], {"Y": "X * 2"})
    ensemble(tmp_path, "one", ["IN"], ["OUT"], [("double", {"X": "IN"}, {"Y": "OUT"})])

    async def body() -> None:
        server = serve(tmp_path, "one")
        await server.start()
        with pytest.raises(InvalidInput, match="'IN'"):
            await server.infer(InferenceRequest("one", {"IN": np.zeros((2, 5), np.float32)}))
        await server.stop()

    run(body)


def test_the_seed_pipeline_built_from_python_serves_as_the_two_models_in_a_row(
    tmp_path: Path,
) -> None:
    """The seed's API: a noise remover then a classifier, exported as one ensemble."""
    import torch

    from headrace.repository import ModelRepository

    torch.manual_seed(0)
    remover = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(8, 8)).eval()
    classifier = torch.nn.Sequential(torch.nn.Linear(8, 1), torch.nn.Sigmoid()).eval()
    repo = ModelRepository(str(tmp_path / "models"))
    noise = repo.add("noise_remover", max_batch_size=8)
    noise.export_version(remover, input_shapes={"noisy": (None, 2, 4)}, output_names=["cleaned"])
    clf = repo.add("classifier", max_batch_size=8)
    clf.export_version(classifier, input_shapes={"x": (None, 8)}, output_names=["y"])
    e = repo.add("end-to-end", platform="ensemble")
    e.add_input(noise.inputs["noisy"])
    e.pipe(noise.outputs["cleaned"], clf.inputs["x"])
    e.add_output(clf.outputs["y"])
    e.export_version(None)

    async def body() -> None:
        server = serve(tmp_path / "models", "end-to-end")
        await server.start()
        noisy = np.random.default_rng(1).standard_normal((3, 2, 4)).astype(np.float32)
        result = await server.infer(InferenceRequest("end-to-end", {"noisy": noisy}))
        with torch.no_grad():
            expected = classifier(remover(torch.from_numpy(noisy))).numpy()
        np.testing.assert_allclose(result.outputs["y"], expected, rtol=1e-5, atol=1e-6)
        await server.stop()

    run(body)


def test_a_cancelled_request_withdraws_its_steps_and_drain_waits_for_the_rest(
    tmp_path: Path,
) -> None:
    import asyncio

    python_model(tmp_path, "slow", ["X"], {"Y": "__import__('time').sleep(0.3) or X"})
    python_model(tmp_path, "double", ["X"], {"Y": "X * 2"})
    ensemble(
        tmp_path,
        "chain",
        ["IN"],
        ["OUT"],
        [("slow", {"X": "IN"}, {"Y": "mid"}), ("double", {"X": "mid"}, {"Y": "OUT"})],
    )

    async def body() -> None:
        server = serve(tmp_path, "chain")
        await server.start()
        first = asyncio.ensure_future(server.infer(InferenceRequest("chain", {"IN": x()})))
        second = asyncio.ensure_future(server.infer(InferenceRequest("chain", {"IN": x()})))
        await asyncio.sleep(0.05)
        second.cancel()  # its caller goes away while 'slow' holds the first
        with pytest.raises(asyncio.CancelledError):
            await second
        result = await first
        np.testing.assert_allclose(result.outputs["OUT"], x() * 2)
        (chain,) = server.loaded_versions()[:1]
        assert chain.name == "chain" and chain.scheduler.pending == 0
        await server.stop()  # drains: nothing left behind

    run(body)
