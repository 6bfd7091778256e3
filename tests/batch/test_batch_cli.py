"""``headrace run`` as a new user meets it: defaults that fit the model, clear reruns and stops."""

from __future__ import annotations

import re

import numpy as np
import pytest
from batch_models import direct, features, mlp_repository

from headrace.batch.results import load_results
from headrace.cli import main

ROWS = 300


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    """A one-input model (input 'x') whose max_batch_size, 64, is under the default 256."""
    return mlp_repository(tmp_path_factory.mktemp("model"), max_batch_size=64)


def test_plain_npy_runs_with_no_options_then_says_already_complete(
    small_model, tmp_path, capsys
) -> None:
    path, module = small_model
    x = features(ROWS)
    np.save(tmp_path / "features.npy", x)  # one array, named after the file, not 'x'
    argv = ["run", path, str(tmp_path / "features.npy"), "--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv) == 0
    assert f"{ROWS} rows" in capsys.readouterr().out
    np.testing.assert_allclose(
        load_results(str(tmp_path / "o")).outputs["y"], direct(module, x), rtol=1e-5, atol=1e-6
    )
    assert main(argv) == 0
    assert "already complete" in capsys.readouterr().out


def test_a_failed_run_that_saved_nothing_does_not_block_the_corrected_command(
    small_model, tmp_path, capsys
) -> None:
    path, module = small_model
    x = features(ROWS)
    np.save(tmp_path / "a.npy", x)
    argv = ["run", path, str(tmp_path / "a.npy"), "--out", str(tmp_path / "o"), "--quiet"]
    assert main([*argv, "--map", "x=no_such_column"]) == 1
    assert "needs column 'no_such_column'" in capsys.readouterr().err
    assert (tmp_path / "o" / "manifest.json").exists()
    assert main(argv) == 0  # no --overwrite needed: the failed job finished no shard
    np.testing.assert_allclose(
        load_results(str(tmp_path / "o")).outputs["y"], direct(module, x), rtol=1e-5, atol=1e-6
    )


def test_interrupted_run_says_how_to_resume(small_model, tmp_path, capsys) -> None:
    path, module = small_model
    hook = tmp_path / "interrupt_once.py"  # stops the first run at row 100, once
    hook.write_text(
        "import os\n"
        "import numpy as np\n"
        "def gen(cols):\n"
        f"    mark = {str(tmp_path / 'interrupted')!r}\n"
        "    if cols['seed'][0] >= 100 and not os.path.exists(mark):\n"
        "        open(mark, 'w').close()\n"
        "        raise KeyboardInterrupt\n"
        "    return {'x': np.stack([np.random.default_rng(int(s)).standard_normal(64)"
        ".astype(np.float32) for s in cols['seed']])}\n"
    )
    out = tmp_path / "o"
    argv = [
        "run", path, "seeds:0:200", "--out", str(out), "--shard-size", "50", "--batch-size", "25",
        "--readers", "1", "--preprocess", f"{hook}:gen", "--quiet",
    ]  # fmt: skip
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert re.search(r"interrupted; \d of 4 shards are saved in .*; run the same command", err)
    assert main(argv) == 0
    expected = np.stack(
        [np.random.default_rng(s).standard_normal(64).astype(np.float32) for s in range(200)]
    )
    result = load_results(str(out))
    assert np.array_equal(result.row_ids, np.arange(200))
    np.testing.assert_allclose(result.outputs["y"], direct(module, expected), rtol=1e-5, atol=1e-6)
