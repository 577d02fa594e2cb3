"""The Ray Tune engine: a sweep's runs as Tune trials, on a local Ray or a running cluster.

Each trial calls `worker.handle_run`, exactly as the local engine does, so run identity,
claims, resume, the artifacts layout and the report are the same; `--artifacts_dir` must be
storage that every node sees. Resources per trial: the CPU's cores divided among `workers`
and `gpus_per_run` GPUs (fractions share one GPU: 0.25 puts four runs on each). Ray is an
optional dependency: `pip install "keras_fmnist[ray]"`.
"""

import os
import time

from keras_fmnist import experiments
from keras_fmnist import study
from keras_fmnist import sweep
from keras_fmnist import worker


def _require_ray():
    try:
        import ray
        from ray import tune
    except ImportError:
        raise study.PlanError(
            "--engine=ray needs Ray Tune: pip install 'keras_fmnist[ray]'") from None
    return ray, tune


def _trial(params, configs, force, threads):
    """One Tune trial: one run of the sweep, reported as its Outcome."""
    from ray import tune

    worker.set_threads(threads)
    config = worker.config_from_json(configs[params["index"]])
    try:
        outcome = worker.handle_run(config, experiments.run_training, force=force)
    except KeyboardInterrupt:
        outcome = worker.Outcome(worker.INTERRUPTED, config.run_dir(), None, "interrupted")
    tune.report({"index": params["index"], **outcome.to_json()})


def run_sweep(configs, n_train, n_val, force=False, skip=None, log=print, on_result=None,
              workers=1, gpus_per_run=0.0, address=None, step_seconds=None, warn=None):
    """Trains `configs` as Ray Tune trials; same arguments and result as `sweep.run_sweep`.

    Args:
        workers: at most this many trials at once (each gets cores / workers CPUs).
        gpus_per_run: GPUs per trial (fractions share a GPU).
        address: "auto" or "HOST:PORT" of a running cluster; None starts Ray locally.
    """
    # Tune's rich console output would bury the sweep's own lines; verbose=0 silences it
    # only in its classic reporter.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray, tune = _require_ray()
    on_result = on_result or (lambda outcome: log(outcome.line()))
    reasons = {c.run_dir(): (skip(c) if skip else None) for c in configs}
    runnable = [c for c in configs if not reasons[c.run_dir()]]
    if not force:  # the plan says which recorded runs cannot be read (the trials retrain them)
        for config in runnable:
            worker.read_recorded(config, warn or log)
    threads = sweep.threads_per_worker(workers)
    steps = sweep.step_times(runnable, step_seconds)
    estimates = {c.run_dir(): sweep.estimate_seconds(c, steps[sweep.architecture(c)], n_train,
                                                     n_val) for c in runnable}
    log(f"plan (ray): {len(configs)} run(s), {len(runnable)} as Tune trials, up to "
        f"{workers} at a time with {threads} CPU(s) and {gpus_per_run:g} GPU(s) each; "
        f"estimated {sweep.clock(sum(estimates.values()) / max(1, workers))} "
        "(finished runs are skipped by the trials)")
    progress = sweep.Progress(len(configs), estimates, workers, log, on_result)
    progress.record_skipped(configs, reasons)
    if runnable:
        _run_trials(ray, tune, runnable, force, threads, workers, gpus_per_run, address,
                    progress, progress.record)
    log(f"sweep ended in {sweep.clock(time.perf_counter() - progress.start)}")
    missing = [c for c in configs if c.run_dir() not in progress.outcomes]
    if missing:
        raise KeyboardInterrupt  # Tune stopped before every trial reported: interrupted
    interrupted = [o for o in progress.outcomes.values() if o.status == worker.INTERRUPTED]
    if interrupted:
        raise KeyboardInterrupt
    return [progress.outcomes[c.run_dir()] for c in configs]


def _run_trials(ray, tune, configs, force, threads, workers, gpus_per_run, address,
                progress, record):
    by_index = {i: c for i, c in enumerate(configs)}
    started = {}

    class Reporter(tune.Callback):
        """Relays trial starts and ends to the sweep's progress lines as they happen."""

        def on_trial_start(self, iteration, trials, trial, **info):
            config = by_index[trial.config["index"]]
            started[trial.config["index"]] = time.perf_counter()
            progress.started(config.run_dir())

        def on_trial_result(self, iteration, trials, trial, result, **info):
            index = result["index"]
            config = by_index[index]
            metrics = worker.read_recorded(config) if result["status"] in (
                worker.TRAINED, worker.DONE, worker.DIVERGED) else None
            record(worker.Outcome(result["status"], result["run_dir"], metrics,
                                  result["detail"]),
                   time.perf_counter() - started.get(index, time.perf_counter()))

        def on_trial_error(self, iteration, trials, trial, **info):
            config = by_index[trial.config["index"]]
            record(worker.Outcome(worker.FAILED, config.run_dir(), None,
                                  f"Ray trial failed; see {trial.local_path}"))

    env = {"KERAS_BACKEND": os.environ.get("KERAS_BACKEND", "torch"),
           "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    owns_ray = not ray.is_initialized()
    if owns_ray:
        if not address:
            # Ray starts its workers at nice 15; beside any other CPU work a trial then waits
            # minutes just to import torch. Here the trials are the work, so a Ray started by
            # the sweep runs them at normal priority.
            os.environ.setdefault("RAY_worker_niceness", "0")
        kwargs = {"address": address} if address else {"num_cpus": os.cpu_count()}
        ray.init(runtime_env={"env_vars": env}, include_dashboard=False,
                 log_to_driver=False, logging_level="ERROR", **kwargs)
    try:
        trainable = tune.with_resources(
            tune.with_parameters(_trial, configs=[worker.config_to_json(c) for c in configs],
                                 force=force, threads=threads),
            {"cpu": threads, "gpu": gpus_per_run},
        )
        storage = os.path.abspath(os.path.join(configs[0].artifacts_dir, ".ray"))
        tuner = tune.Tuner(
            trainable,
            param_space={"index": tune.grid_search(list(by_index))},
            # Reused actors keep keras and torch imported between trials: a fresh actor per
            # run paid their import again.
            tune_config=tune.TuneConfig(max_concurrent_trials=workers, reuse_actors=True),
            run_config=tune.RunConfig(
                name=f"sweep-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}",
                storage_path=storage, verbose=0, callbacks=[Reporter()],
            ),
        )
        tuner.fit()
    finally:
        if owns_ray:
            ray.shutdown()
