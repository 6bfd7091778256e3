"""Offline batch inference (``headrace run``): readers, writers, manifest, local and Ray runners.

Entry points: :func:`headrace.batch.local.run_local` and :func:`headrace.batch.ray_runner.run_ray`,
both taking a :class:`headrace.batch.job.Job`. Submodules are imported on use; nothing heavy
(pyarrow, Pillow, h5py, Ray) loads until a job needs it.
"""
