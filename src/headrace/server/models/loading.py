"""Turn one model version's configuration into running instances and a scheduler.

The instances come from placement (:mod:`headrace.engine.placement`), as in every door: one
per ``instance_group`` entry's ``count`` per device. An ensemble has none: its scheduler runs
the steps on the other models' schedulers, reached through the registry's router. Backends load on a worker thread (loading
is blocking file and device work); the pool and scheduler are built on the event loop. A
failure part-way closes whatever was already built, so nothing leaks into a half-loaded
version.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from headrace.backends.base import BackendContext, BackendFactory
from headrace.config import ModelConfig
from headrace.config.platforms import ENSEMBLE_PLATFORM
from headrace.engine.placement import PlacementOptions, close_instances, place_instances
from headrace.scheduling import InstancePool, Scheduler, make_scheduler
from headrace.scheduling.caching import CachingScheduler
from headrace.scheduling.response_cache import ResponseCache
from headrace.scheduling.router import Router
from headrace.server.models.table import LoadedVersion
from headrace.server.statistics import VersionStatistics
from headrace.server.validation import Signature

__all__ = ["VersionSource", "load_version"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VersionSource:
    """Where one version comes from: its completed config, directories and backend factory.

    ``backend`` names what executes it (``onnxruntime``…) for the statistics and metrics.
    """

    name: str
    version: int
    config: ModelConfig
    factory: BackendFactory
    model_dir: str = ""
    version_dir: str = ""
    backend: str = ""

    def context(self) -> BackendContext:
        """The instances' common context; placement sets each one's device and name."""
        return BackendContext(
            model_name=self.name,
            version=self.version,
            model_dir=self.model_dir,
            version_dir=self.version_dir,
            config=self.config,
        )


async def load_version(
    source: VersionSource,
    *,
    router: Router | None = None,
    num_buffers: int = 2,
    run_now_below_us: float = 0.0,
    cache: ResponseCache | None = None,
) -> LoadedVersion:
    """Place the instances (on a thread), then build the pool and the scheduler.

    A version whose config enables ``response_cache`` schedules through ``cache`` (the
    server's, None when it has none: the version then runs uncached, as in Triton)."""
    config = source.config
    signature = Signature.for_config(source.name, config)
    stats = VersionStatistics(source.name, str(source.version))
    pool: InstancePool | None = None
    if config.platform == ENSEMBLE_PLATFORM:
        scheduler = make_scheduler(config, None, stats, router=router)  # steps run elsewhere
    else:
        options = PlacementOptions(num_buffers=num_buffers)
        instances = await asyncio.to_thread(
            place_instances, source.context(), source.factory, options
        )
        try:
            pool = InstancePool(instances, run_now_below_us=run_now_below_us)
        except BaseException:
            await asyncio.to_thread(close_instances, instances)
            raise
        try:
            scheduler = make_scheduler(config, pool, stats, router=router)
        except BaseException:
            await asyncio.to_thread(pool.close)
            raise
    scheduler = _with_cache(source, scheduler, stats, cache)
    backend = source.backend or config.backend or config.platform or "python_callable"
    return LoadedVersion(
        name=source.name,
        version=source.version,
        config=config,
        signature=signature,
        scheduler=scheduler,
        pool=pool,
        stats=stats,
        backend=backend,
    )


def _with_cache(
    source: VersionSource,
    scheduler: Scheduler,
    stats: VersionStatistics,
    cache: ResponseCache | None,
) -> Scheduler:
    config = source.config
    if not config.response_cache.enable:
        return scheduler
    if cache is None:
        _log.warning(
            "model '%s' version %d enables response_cache, but the server has no cache "
            "(--cache-config local,size=BYTES): it runs uncached",
            source.name,
            source.version,
        )
        return scheduler
    if config.model_transaction_policy.decoupled or config.HasField("sequence_batching"):
        return scheduler  # validate_config refuses these; a backend may set decoupled later
    return CachingScheduler(scheduler, cache, stats, name=source.name, version=source.version)
