"""The examples repository: every model valid, and the models compute what they claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from headrace.errors import InvalidConfig
from headrace.repository import ModelEntry, ModelRepository
from headrace.repository.examples import EXAMPLE_MODELS, create_examples_repository

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> ModelRepository:
    return create_examples_repository(tmp_path_factory.mktemp("ex") / "repo")


def execute(entry: ModelEntry, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    from headrace.backends import load_backend
    from headrace.backends.base import BackendContext

    version = entry.versions()[-1]
    backend = load_backend(
        BackendContext(
            model_name=entry.name,
            version=version,
            model_dir=entry.path,
            version_dir=entry.local_version_dir(version),
            config=entry.completed_config(version),
        )
    )
    try:
        return {k: np.asarray(v) for k, v in backend.execute(inputs).items()}
    finally:
        backend.unload()


def test_every_example_is_valid(examples: ModelRepository) -> None:
    report = examples.scan()
    assert report.ok, [str(p) for p in report.problems]
    assert report.names() == sorted(EXAMPLE_MODELS)
    mlp = report.entry("mlp")
    assert mlp is not None
    config = mlp.completed_config()
    assert config.HasField("dynamic_batching") and config.max_batch_size == 64
    simple = report.entry("simple")
    assert simple is not None and simple.completed_config().max_batch_size == 8


def test_simple_adds_and_subtracts(examples: ModelRepository) -> None:
    a = np.arange(32, dtype=np.int32).reshape(2, 16)
    b = np.full((2, 16), 3, dtype=np.int32)
    out = execute(examples["simple"], {"INPUT0": a, "INPUT1": b})
    np.testing.assert_array_equal(out["OUTPUT0"], a + b)
    np.testing.assert_array_equal(out["OUTPUT1"], a - b)
    assert out["OUTPUT0"].dtype == np.int32


def test_identity_bytes_passes_bytes_through(examples: ModelRepository) -> None:
    data = np.array([[b"headrace", b"", "é".encode()]], dtype=np.object_)
    out = execute(examples["identity_bytes"], {"INPUT0": data})
    assert out["OUTPUT0"].tolist() == data.tolist()


def test_torch_examples_match_the_seeded_modules(examples: ModelRepository) -> None:
    from headrace.repository.example_models import MLP, NoiseRemover, seeded

    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    for name, module, (inp, out) in (
        ("mlp", seeded(MLP, 0), ("INPUT0", "OUTPUT0")),
        ("noise_remover", seeded(NoiseRemover, 1), ("INPUT0", "OUTPUT0")),
        ("mlp_torchscript", seeded(MLP, 0), ("INPUT__0", "OUTPUT__0")),
    ):
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        got = execute(examples[name], {inp: x})[out]
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=name)


def test_existing_directory_needs_force(tmp_path: Path) -> None:
    target = tmp_path / "repo"
    (target / "old_model").mkdir(parents=True)
    with pytest.raises(InvalidConfig, match=r"not empty .*\(no \.headrace-examples\.json"):
        create_examples_repository(target)
    repo = create_examples_repository(target, force=True)
    assert "old_model" not in repo and sorted(repo.names()) == sorted(EXAMPLE_MODELS)


def test_an_unchanged_examples_tree_is_reused_and_a_changed_one_refused(tmp_path: Path) -> None:
    target = tmp_path / "repo"
    create_examples_repository(target)
    config = target / "mlp" / "config.pbtxt"
    written = config.stat().st_mtime_ns
    (target / "simple" / "1" / "__pycache__").mkdir()  # serving may leave byte code: ignored
    (target / "simple" / "1" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"x")
    again = create_examples_repository(target)
    assert sorted(again.names()) == sorted(EXAMPLE_MODELS)
    assert config.stat().st_mtime_ns == written  # reused, not rewritten
    (target / "notes.txt").write_text("mine")
    with pytest.raises(InvalidConfig, match=r"notes\.txt is not an example file.*--force"):
        create_examples_repository(target)
    (target / "notes.txt").unlink()
    config.write_text(config.read_text() + "# edited\n")
    with pytest.raises(InvalidConfig, match=r"mlp/config\.pbtxt was changed"):
        create_examples_repository(target)
    (target / "mlp" / "1" / "model.onnx").unlink()
    with pytest.raises(InvalidConfig, match=r"mlp/1/model\.onnx is missing"):
        create_examples_repository(target)


def test_particlenet_examples_match_the_seeded_module_at_every_batch_size(
    examples: ModelRepository,
) -> None:
    from headrace.repository.example_models import seeded
    from headrace.repository.examples import PARTICLENET_SEED, particlenet_input_shapes
    from headrace.repository.particlenet import ParticleNet

    module = seeded(ParticleNet, PARTICLENET_SEED)
    shapes = particlenet_input_shapes()
    for batch in (1, 5):
        rng = np.random.default_rng(batch)
        x = {k: rng.standard_normal((batch, *s[1:])).astype(np.float32) for k, s in shapes.items()}
        x["mask"][:, 30:] = 0.0  # padded jets: the last 20 particles are absent
        with torch.no_grad():
            expected = module(*(torch.from_numpy(x[k]) for k in shapes)).numpy()
        assert expected.shape == (batch, 2)
        np.testing.assert_allclose(expected.sum(axis=1), 1.0, atol=1e-5)
        for name in ("particlenet", "particlenet_torchscript"):
            assert examples[name].completed_config().max_batch_size == 256
            got = execute(examples[name], x)["probabilities"]
            np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=f"{name} batch {batch}")


def test_particlenet_ignores_padding_particles() -> None:
    from headrace.repository.example_models import seeded
    from headrace.repository.particlenet import ParticleNet

    module = seeded(ParticleNet, 4)
    rng = torch.Generator().manual_seed(0)
    points, features = torch.randn(1, 50, 2, generator=rng), torch.randn(1, 50, 8, generator=rng)
    mask = torch.ones(1, 50, 1)
    mask[:, 25:] = 0
    with torch.no_grad():
        first = module(points, features, mask)
        points[:, 25:], features[:, 25:] = 7.0, -3.0  # change only the padding
        second = module(points, features, mask)
    torch.testing.assert_close(first, second)
