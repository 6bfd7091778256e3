"""``bench tune``'s measuring side: write each setting, serve it, load it, read its spend.

Each setting is written into a fresh temporary repository holding only the tuned model (its
files copied, its ``config.pbtxt`` rewritten), served by its own ``headrace serve`` on
127.0.0.1, then loaded at each client concurrency. The load is perf_analyzer when it is found
(:mod:`headrace.bench.perf_analyzer`), else headrace's own generator, ``bench load``'s
(:mod:`headrace.bench.load`), with the same windows, trials and stability band (a point that
never steadies fails under perf_analyzer; headrace's keeps its last three windows). Throughput and
p99 are the load generator's; inferences and CPU seconds are the server's own over the whole
load run (statistics endpoint and psutil), so the cost does not depend on the generator.
The search stops starting new settings once ``budget_s`` would be overrun.
:func:`run_side_by_side` then serves the pick and the model's own config at once and loads
them in turns, so that their difference is not the machine's drift between two settings.
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path

from headrace.backends.signature import int_parameter
from headrace.bench.tune import Measurement, Setting, SideBySide
from headrace.bench.tune_serve import TuneServer, serve
from headrace.config.defaults import fill_defaults
from headrace.config.platforms import backend_of_platform
from headrace.config.tensors import input_specs
from headrace.config.text import ModelConfig, format_config, read_config
from headrace.errors import HeadraceError, InvalidInput

__all__ = [
    "TuneOptions",
    "apply_setting",
    "model_setting",
    "run_side_by_side",
    "run_tune",
    "tunes_threads",
]

_NO_BATCHER = -1
"""``max_queue_delay_us`` of a setting without ``dynamic_batching`` (only the model's own)."""
_MAX_TRIALS = 6
_STABILITY_PERCENT = 30.0
"""Each point's load: at most this many windows, stable once the last three lie within ±this
percent of their mean (perf_analyzer's rule, given to either generator)."""

THREADS_PARAMETER = "intra_op_thread_count"
"""The onnxruntime backend's per-instance compute threads (Triton's parameter name)."""


@dataclass(frozen=True)
class TuneOptions:
    """What to search and how long each measurement lasts."""

    model_dir: Path
    instances: tuple[int, ...] = (1, 2)
    max_batch_sizes: tuple[int, ...] = (8, 64)
    queue_delays_us: tuple[int, ...] = (0, 500)
    intra_op_threads: tuple[int, ...] = (0,)
    concurrencies: tuple[int, ...] = (4, 16)
    measurement_ms: int = 2000
    budget_s: float = 300.0
    generator: str = "auto"  # auto, perf_analyzer or headrace ("client": headrace's, older name)
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    serve_args: tuple[str, ...] = ()


def model_setting(config: ModelConfig) -> Setting:
    """The setting a model's own config amounts to, Triton's defaults filled in."""
    filled = copy.deepcopy(config)
    fill_defaults(filled)
    delay = (
        filled.dynamic_batching.max_queue_delay_microseconds
        if filled.HasField("dynamic_batching")
        else _NO_BATCHER
    )
    instances = sum(group.count for group in filled.instance_group) or 1
    threads = _threads(config) if tunes_threads(config) else 0
    return Setting(instances, filled.max_batch_size, delay, threads)


def tunes_threads(config: ModelConfig) -> bool:
    """Whether the model's backend takes ``intra_op_thread_count`` (onnxruntime does)."""
    backend = config.backend or backend_of_platform(config.platform)
    return backend == "onnxruntime"


def _threads(config: ModelConfig) -> int:
    return max(0, int_parameter(config, THREADS_PARAMETER, 0))


def apply_setting(config: ModelConfig, setting: Setting) -> ModelConfig:
    """A copy of ``config`` with one instance group of ``setting.instances`` (the kind and
    devices of the model's first group), the max batch size and the queue delay."""
    if config.max_batch_size < 1 and setting.max_batch_size > 0:
        raise InvalidInput(
            f"model {config.name!r} does not batch (max_batch_size 0); bench tune can only "
            "tune batching models"
        )
    out = copy.deepcopy(config)
    first = copy.deepcopy(out.instance_group[0]) if out.instance_group else None
    del out.instance_group[:]
    group = out.instance_group.add()
    if first is not None:
        group.kind = first.kind
        group.gpus.extend(first.gpus)
    group.count = setting.instances
    out.max_batch_size = setting.max_batch_size
    if setting.max_queue_delay_us == _NO_BATCHER:
        out.ClearField("dynamic_batching")
    else:
        batching = out.dynamic_batching
        batching.max_queue_delay_microseconds = setting.max_queue_delay_us
        kept = [b for b in batching.preferred_batch_size if b <= setting.max_batch_size]
        del batching.preferred_batch_size[:]
        batching.preferred_batch_size.extend(kept)
    if setting.intra_op_threads:
        if not tunes_threads(config):
            raise InvalidInput(
                f"model {config.name!r} is not an onnxruntime model; --intra-op-threads "
                "applies to onnxruntime models only"
            )
        out.parameters[THREADS_PARAMETER].string_value = str(setting.intra_op_threads)
    elif tunes_threads(config) and THREADS_PARAMETER in out.parameters:
        del out.parameters[THREADS_PARAMETER]  # 0: the backend's own share
    return out


def run_tune(
    options: TuneOptions,
    settings: Sequence[Setting],
    baseline: Setting,
    progress: Callable[[Measurement], None] = lambda m: None,
) -> list[Measurement]:
    """Measure every setting at every concurrency, in order, within ``options.budget_s``."""
    config = read_config(str(options.model_dir / "config.pbtxt"))
    measure = _measurer(options, config)
    started = time.monotonic()
    longest = 0.0
    out: list[Measurement] = []
    for setting in settings:
        elapsed = time.monotonic() - started
        if out and elapsed + longest > options.budget_s:
            for concurrency in options.concurrencies:
                out.append(
                    Measurement(
                        setting,
                        concurrency,
                        baseline=setting == baseline,
                        error=f"not run: --budget-s {options.budget_s:g} spent",
                    )
                )
            continue
        text = format_config(config if setting == baseline else apply_setting(config, setting))
        began = time.monotonic()
        for measurement in _serve_and_load(options, config.name, setting, text, measure):
            measurement = replace(measurement, baseline=setting == baseline)
            out.append(measurement)
            progress(measurement)
        longest = max(longest, time.monotonic() - began)
    return out


Measure = Callable[[TuneServer, int], tuple[float, float, float, str]]
"""(server, concurrency) -> (throughput, p50 ms, p99 ms, generator name)."""


def run_side_by_side(
    options: TuneOptions,
    chosen: Setting,
    baseline: Setting,
    concurrency: int,
    rounds: int,
    progress: Callable[[Measurement], None] = lambda m: None,
) -> SideBySide:
    """Serve ``chosen`` and ``baseline`` at once; load them in turns, ``rounds`` times each,
    the first to go alternating from round to round."""
    config = read_config(str(options.model_dir / "config.pbtxt"))
    measure = _measurer(options, config)
    results: dict[Setting, list[Measurement]] = {chosen: [], baseline: []}
    with ExitStack() as stack:
        servers = {}
        for setting in (chosen, baseline):
            text = format_config(config if setting == baseline else apply_setting(config, setting))
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="headrace-tune-")))
            repository = _repository(tmp, options.model_dir, config.name, text)
            servers[setting] = stack.enter_context(
                serve(repository, config.name, tmp, options.serve_args)
            )
        for round_no in range(rounds):
            order = (chosen, baseline) if round_no % 2 == 0 else (baseline, chosen)
            for setting in order:
                measurement = _load_once(
                    servers[setting], config.name, setting, concurrency, measure
                )
                measurement = replace(measurement, baseline=setting == baseline)
                results[setting].append(measurement)
                progress(measurement)
    return SideBySide(concurrency, tuple(results[chosen]), tuple(results[baseline]))


def _repository(tmp: Path, model_dir: Path, model: str, config_text: str) -> Path:
    """A repository in ``tmp`` holding only ``model``: its files, ``config_text`` as config."""
    repository = tmp / "repository"
    shutil.copytree(model_dir, repository / model)
    (repository / model / "config.pbtxt").write_text(config_text, encoding="utf-8")
    return repository


def _serve_and_load(
    options: TuneOptions, model: str, setting: Setting, config_text: str, measure: Measure
) -> list[Measurement]:
    with tempfile.TemporaryDirectory(prefix="headrace-tune-") as tmp:
        repository = _repository(Path(tmp), options.model_dir, model, config_text)
        try:
            with serve(repository, model, Path(tmp), options.serve_args) as server:
                return [
                    _load_once(server, model, setting, c, measure) for c in options.concurrencies
                ]
        except HeadraceError as exc:
            return [Measurement(setting, c, error=str(exc)[-600:]) for c in options.concurrencies]


def _load_once(
    server: TuneServer, model: str, setting: Setting, concurrency: int, measure: Measure
) -> Measurement:
    """One load run; a failure (the generator's, or a server that stopped answering) is
    recorded on the point and the search goes on."""
    try:
        count, cpu, began = server.inference_count(model), server.cpu_seconds(), time.monotonic()
        throughput, p50, p99, generator = measure(server, concurrency)
        inferences = server.inference_count(model) - count
        cpu_s, wall_s = server.cpu_seconds() - cpu, time.monotonic() - began
    except (HeadraceError, OSError) as exc:
        return Measurement(setting, concurrency, error=str(exc)[-600:])
    return Measurement(
        setting,
        concurrency,
        throughput=throughput,
        p50_ms=p50,
        p99_ms=p99,
        inferences=inferences,
        wall_s=wall_s,
        cpu_s=cpu_s,
        generator=generator,
    )


def _measurer(options: TuneOptions, config: ModelConfig) -> Measure:
    """perf_analyzer when found (or asked for), else headrace's own generator (``bench load``)."""
    from headrace.bench import perf_analyzer

    specs = input_specs(config)
    shapes = {
        s.name: options.shapes.get(s.name, tuple(16 if d < 0 else d for d in s.dims)) for s in specs
    }
    executable = None
    if options.generator not in ("headrace", "client"):
        try:
            executable = perf_analyzer.locate()
        except HeadraceError:
            if options.generator == "perf_analyzer":
                raise
    if executable is not None:

        def with_perf_analyzer(
            server: TuneServer, concurrency: int
        ) -> tuple[float, float, float, str]:
            load = perf_analyzer.PerfLoad(
                model=config.name,
                url=server.http_url,
                protocol="http",
                concurrency=concurrency,
                shapes=shapes,
                measurement_ms=options.measurement_ms,
                max_trials=_MAX_TRIALS,
                stability_percent=_STABILITY_PERCENT,
            )
            row = perf_analyzer.run_perf_analyzer(load, executable=executable)
            return row.throughput, row.p50_us / 1e3, row.p99_us / 1e3, "perf_analyzer"

        return with_perf_analyzer
    from headrace.bench.load import LoadPoint, LoadSettings, run_load

    def with_headrace(server: TuneServer, concurrency: int) -> tuple[float, float, float, str]:
        settings = LoadSettings(
            url=server.http_url,
            model=config.name,
            protocol="http",
            shapes=shapes,
            window_ms=options.measurement_ms,
            max_trials=_MAX_TRIALS,
            stability_percent=_STABILITY_PERCENT,
        )
        (result,) = run_load(settings, [LoadPoint(concurrency=concurrency)])
        row = result.row
        if row is None or result.requests == 0:
            raise InvalidInput(f"no request succeeded: {result.error or 'none completed'}")
        if result.errors:
            raise InvalidInput(f"{result.errors} requests failed: {result.error}")
        return row.throughput, row.p50_us / 1e3, row.p99_us / 1e3, "headrace"

    return with_headrace
