"""The local runner: outputs equal direct model calls row for row, resumes, refuses changes."""

from __future__ import annotations

import numpy as np
import pytest
from batch_models import direct, features, mlp_repository

from headrace.batch.dataset import DataSpec
from headrace.batch.job import Job, JobOptions
from headrace.batch.local import run_local
from headrace.batch.results import load_results
from headrace.cli import main
from headrace.errors import InvalidInput
from headrace.repository.resolve import ModelSource

ROWS = 1000


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return mlp_repository(tmp_path_factory.mktemp("model"))


@pytest.fixture
def data(tmp_path) -> tuple[str, np.ndarray]:
    x = features(ROWS)
    np.save(tmp_path / "x.npy", x)
    return str(tmp_path / "x.npy"), x


def _job(model_path: str, source: str, out: str, **options) -> Job:
    defaults = dict(batch_size=64, shard_size=150, progress=False)
    return Job(
        ModelSource(model_path), DataSpec(source), out, JobOptions(**{**defaults, **options})
    )


@pytest.mark.parametrize("instances,num_buffers,readers", [(1, 1, 1), (3, 2, 2)])
def test_outputs_equal_direct_model_calls(
    model, data, tmp_path, instances, num_buffers, readers
) -> None:
    path, module = model
    source, x = data
    out = str(tmp_path / "out")
    summary = run_local(
        _job(path, source, out, instances=instances, num_buffers=num_buffers, readers=readers)
    )
    assert (summary.rows, summary.shards_written, summary.shards_skipped) == (ROWS, 7, 0)
    result = load_results(out)
    assert np.array_equal(result.row_ids, np.arange(ROWS))
    np.testing.assert_allclose(result.outputs["y"], direct(module, x), rtol=1e-5, atol=1e-6)


def test_rerun_skips_finished_shards_and_changes_are_refused(model, data, tmp_path) -> None:
    path, _ = model
    source, x = data
    out = str(tmp_path / "out")
    run_local(_job(path, source, out))
    again = run_local(_job(path, source, out))
    assert (again.rows, again.shards_written, again.shards_skipped) == (0, 0, 7)
    np.save(source, x + 1)
    with pytest.raises(InvalidInput, match="changed: input"):
        run_local(_job(path, source, out))
    replaced = run_local(_job(path, source, out, overwrite=True))
    assert replaced.shards_written == 7


def test_preprocess_hook_and_column_mapping(model, tmp_path) -> None:
    path, module = model
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    x = features(300, seed=5)
    table = pa.table(
        {"feat": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1).astype(np.float64)), 64)}
    )
    pq.write_table(table, tmp_path / "in.parquet", row_group_size=50)
    hook = tmp_path / "hooks.py"
    hook.write_text("def double(cols):\n    return {'feat': cols['feat'] * 2}\n")
    out = str(tmp_path / "out")
    job = _job(
        path,
        str(tmp_path / "in.parquet"),
        out,
        rename=(("x", "feat"),),
        preprocess=f"{hook}:double",
    )
    run_local(job)
    np.testing.assert_allclose(
        load_results(out).outputs["y"], direct(module, 2 * x), rtol=1e-5, atol=1e-6
    )
    # One column and a one-input model: no --map needed.
    run_local(_job(path, str(tmp_path / "in.parquet"), str(tmp_path / "o2")))
    np.testing.assert_allclose(
        load_results(str(tmp_path / "o2")).outputs["y"], direct(module, x), rtol=1e-5, atol=1e-6
    )


def test_errors_name_the_problem(model, data, tmp_path) -> None:
    path, _ = model
    source, _ = data
    with pytest.raises(InvalidInput, match="exceeds model"):
        run_local(_job(path, source, str(tmp_path / "a"), batch_size=1024))
    hook = tmp_path / "bad.py"
    hook.write_text("def wrong(cols):\n    return {'x': cols['x'][:, :3]}\n")
    with pytest.raises(InvalidInput, match=r"expects \[64\]"):
        run_local(_job(path, source, str(tmp_path / "b"), preprocess=f"{hook}:wrong"))
    raising_hook = tmp_path / "boom.py"
    raising_hook.write_text("def boom(cols):\n    raise RuntimeError('hook exploded')\n")
    with pytest.raises(RuntimeError, match="hook exploded"):
        run_local(_job(path, source, str(tmp_path / "c"), preprocess=f"{raising_hook}:boom"))


def test_cli_runs_a_bare_onnx_file_over_seeds(model, tmp_path, capsys) -> None:
    path, module = model
    onnx_file = f"{path}/1/model.onnx"
    hook = tmp_path / "gen.py"
    hook.write_text(
        "import numpy as np\n"
        "def noise(cols):\n"
        "    return {'x': np.stack([np.random.default_rng(int(s)).standard_normal(64).astype(np.float32)"
        " for s in cols['seed']])}\n"
    )
    out = tmp_path / "gen"
    argv = [
        "run",
        onnx_file,
        "seeds:100:260",
        "--out",
        str(out),
        "--batch-size",
        "32",
        "--shard-size",
        "50",
        "--format",
        "npy",
        "--preprocess",
        f"{hook}:noise",
        "--quiet",
    ]
    assert main(argv) == 0
    assert "160 rows" in capsys.readouterr().out
    expected = np.stack(
        [np.random.default_rng(s).standard_normal(64).astype(np.float32) for s in range(100, 260)]
    )
    result = load_results(str(out))
    np.testing.assert_allclose(result.outputs["y"], direct(module, expected), rtol=1e-5, atol=1e-6)
    assert main(argv) == 0
    assert "already complete: all 4 shards" in capsys.readouterr().out
    assert main(["run", onnx_file, "seeds:10", "--out", str(out), "--quiet"]) == 1


def test_run_command_uses_the_run_parser_alone(model, data, tmp_path) -> None:
    from headrace.batch.cli import build_parser, run_command

    path, module = model
    source, x = data
    summary = run_command(["run", path, source, "--out", str(tmp_path / "o"), "--instances", "2"])
    assert (summary.rows, summary.shards_skipped) == (ROWS, 0)
    np.testing.assert_allclose(
        load_results(str(tmp_path / "o")).outputs["y"], direct(module, x), rtol=1e-5, atol=1e-6
    )
    args = build_parser().parse_args([path, source, "--out", "o", "--num-buffers", "3"])
    assert (args.model, args.num_buffers, args.batch_size) == (path, 3, 0)
    with pytest.raises(InvalidInput, match="starting with 'run'"):
        run_command(["serve", path])


def test_the_model_instance_group_decides_the_instances(tmp_path, data, monkeypatch) -> None:
    """``instance_group [{ count: 2, kind: KIND_CPU }]`` is two instances, as in serve."""
    import headrace.batch.model as job_model
    from headrace.repository import ModelRepository

    path, module = mlp_repository(tmp_path)
    ModelRepository(str(tmp_path / "repo"))["mlp"].config.add_instance_group(count=2, kind="cpu")
    built: list[str] = []
    make = job_model.make_instances

    def recording(model, specs, *, num_buffers):  # type: ignore[no-untyped-def]
        instances = make(model, specs, num_buffers=num_buffers)
        built.extend(instance.name for instance in instances)
        return instances

    monkeypatch.setattr("headrace.batch.local.make_instances", recording)
    source, x = data
    summary = run_local(_job(path, source, str(tmp_path / "out")))
    assert summary.instances == 2 and built == ["mlp_0_0", "mlp_0_1"]
    np.testing.assert_allclose(
        load_results(str(tmp_path / "out")).outputs["y"], direct(module, x), rtol=1e-5, atol=1e-6
    )
    overridden = run_local(_job(path, source, str(tmp_path / "o3"), instances=3, device="cpu"))
    assert overridden.instances == 3
