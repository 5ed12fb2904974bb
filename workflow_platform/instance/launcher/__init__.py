"""Warm runs: Dagster's run queue and a run launcher whose workers have imported Dagster and the code location.

- `coordinator.py`  WarmRunCoordinator: Dagster's QueuedRunCoordinator that also wakes the run-queue daemon
- `daemon.py`       `wfp daemon`: Dagster's daemons, the run-queue one woken at once instead of every interval
- `run_launcher.py` WarmRunLauncher: hands each run to a worker pool; worker health, termination
- `pool.py`         the pool, in the launching process: one zygote per code location, recycling, worker exits
- `zygote.py`       the template process (imports once, forks one single-use worker per run)
- `worker.py`       a forked worker: its own instance, then Dagster's own run-worker body
- `wakeup.py`       the PostgreSQL notification channel between the coordinator and the daemon
"""
