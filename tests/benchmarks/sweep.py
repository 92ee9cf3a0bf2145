"""Benchmark: the sweep flow on two Dask workers versus the same optuna study run sequentially, in one run.

1. Parallel trials: `--trials` xgboost trials (random sampler, fixed seed, no pruning) as a sweep
   with `max_concurrent` 2 on two single-threaded Dask worker processes, versus the same trials
   asked and told one after another in this process, with the same objective
   (`tasks.trial.evaluate_candidate`) on the same split rows. Ratio of the trial phase's wall time
   to the sequential study with one xgboost thread (goal ≤ 0.57: ≥ 88 % parallel efficiency on
   two cores). Shown beside it: the sequential study with two xgboost threads (one trial using
   both cores), and the floor: the same trials handed one at a time to two plain processes (no
   Prefect, MLflow or Dask), which is what the machine itself allows; the trial phase as a ratio
   to that floor is what orchestration costs (goal ≤ 1.05). The script checks that the sweep and
   the sequential study ran the same configurations to the same scores. With `--rounds N` the
   sweep and the floor run N times, one after the other, and the median of the N ratios is shown:
   on a shared machine the floor alone moved by 11 % between two runs minutes apart.
   `--also-trimmed` adds, in each round, the same sweep on workers started with Dask's
   `MALLOC_TRIM_THRESHOLD_`, which the sweep's own workers leave out.
2. Early termination: the same trials as sweeps with the median, successive-halving and Hyperband
   pruners; total boosting rounds as a ratio to the unpruned sweep (goals ≤ 0.6 for median and
   ≤ 0.3 for halving/Hyperband) and the best score's gap to the unpruned best (goal ≤ 0.5 %).
   The random sampler's per-trial seeds make every sweep propose the same configurations, so
   the pruners are compared on identical trials.

    python -m tests.benchmarks.sweep [--rows 100000] [--trials 48] [--only parallel|pruning] [--rounds 1]
"""

import argparse
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

from tests.benchmarks.scratch import scratch_workspace

EXCLUDE = ["application_id", "applied_at"]
TARGET = "default"
SEED = 7
_PROCESS: dict[str, Any] = {}
"""Per process: the split rows and the in-memory study of the plain baselines."""


def plain_trial(number: int, threads: int, setup: dict[str, Any]) -> tuple[int, dict[str, Any], float]:
    """Trial `number` as plain optuna code: ask the seeded sampler, fit, score, tell (no orchestration)."""
    import optuna

    from mlpipe.tasks.datasets import read_snapshot
    from mlpipe.tasks.sweep.trial import Reporter, evaluate_candidate

    if "study" not in _PROCESS:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _PROCESS["study"] = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
        _PROCESS["rows"] = [read_snapshot(setup[name], setup["store"]) for name in ("train", "validation")]
    study, (train_rows, valid_rows) = _PROCESS["study"], _PROCESS["rows"]
    study.sampler = setup["spec"].sampler_for(setup["space"], 1, number)
    trial = study.ask()
    candidate = setup["space"].suggest(trial, SEED)
    scores = evaluate_candidate(
        candidate, setup["contract"], train_rows, valid_rows, "roc_auc", Reporter(trial, None), 1, threads, "bench"
    )
    study.tell(trial, scores["roc_auc"])
    return number, trial.params, scores["roc_auc"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--only", choices=["parallel", "pruning"], help="run one of the two comparisons")
    parser.add_argument("--rounds", type=int, default=1, help="sweep and floor pairs, for the median ratio")
    parser.add_argument(
        "--also-trimmed",
        action="store_true",
        help="each round also sweeps on workers with Dask's MALLOC_TRIM_THRESHOLD_ (what leaving it out buys)",
    )
    args = parser.parse_args()
    scratch = scratch_workspace("sweep")
    from mlpipe.runtime import configure_process

    configure_process()  # before Prefect and Dask are imported: they read their settings once
    import optuna

    from mlpipe.blocks import DaskCluster, WorkspaceConfig
    from mlpipe.demo_data import credit_default
    from mlpipe.flows.sweep import SweepParams, sweep
    from mlpipe.tasks.data.contract_inference import infer_contract
    from mlpipe.tasks.data.ingest import ingest
    from mlpipe.tasks.data.split import SplitSpec, split
    from mlpipe.tasks.data.validate import validate
    from mlpipe.tasks.datasets import read_snapshot
    from mlpipe.tasks.sweep.results import SweepResult
    from mlpipe.tasks.sweep.space import SearchSpace, auto_space
    from mlpipe.tasks.sweep.study import PrunerSpec, StudySpec
    from mlpipe.workspace import available_cores

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    data = scratch / "credit.parquet"
    credit_default(rows=args.rows, seed=4, columns=30).to_parquet(data, index=False)
    workspace = WorkspaceConfig(cluster=DaskCluster(n_workers=2, threads_per_worker=1, processes=True))
    store = workspace.resolve().datastore
    space = SearchSpace(families={"xgboost": auto_space("classification").families["xgboost"]})
    print(f"cores: {available_cores()}; data: {args.rows:,} rows × 30 columns; {args.trials} xgboost trials")

    # The rows every trial sees: the flow's own split, made here by the same functions.
    raw = ingest(str(data), store)
    contract = infer_contract(read_snapshot(raw, store), TARGET, exclude=EXCLUDE)
    splits = split(validate(raw, contract, store), contract, SplitSpec(), store)
    spec = StudySpec(sampler="random", pruner=PrunerSpec(kind="none"), seed=SEED).resolved("classification")
    setup = {
        "space": space,
        "spec": spec,
        "contract": contract,
        "train": splits.train,
        "validation": splits.validation,
        "store": store,
    }

    def sequential(threads: int) -> tuple[float, dict[int, tuple[dict[str, Any], float]]]:
        _PROCESS.clear()
        plain_trial(0, threads, setup)  # reads the rows, as a worker does once
        _PROCESS["study"] = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
        started = time.perf_counter()
        results = [plain_trial(number, threads, setup) for number in range(args.trials)]
        return time.perf_counter() - started, {number: (params, value) for number, params, value in results}

    def two_processes() -> float:
        """The floor: trials handed one at a time to two plain processes, as fast as the machine allows."""
        with ProcessPoolExecutor(2, mp_context=get_context("spawn")) as pool:
            list(pool.map(plain_trial, [0, 1], [1, 1], [setup, setup]))  # start-up and reading the rows
            started = time.perf_counter()
            list(pool.map(plain_trial, range(args.trials), [1] * args.trials, [setup] * args.trials))
            return time.perf_counter() - started

    def swept(pruner: str, run: int = 0, trimmed: bool = False) -> SweepResult:
        params = SweepParams(
            data=str(data),
            target=TARGET,
            # a new study each time: the same name resumes
            name=f"bench-sweep-{pruner}" + (f"-{run}" if run else "") + ("-trimmed" if trimmed else ""),
            exclude=EXCLUDE,
            space=space,
            study=StudySpec(sampler="random", pruner=PrunerSpec(kind=pruner), seed=SEED),
            max_trials=args.trials,
            max_concurrent=2,
        )
        started = time.perf_counter()
        trimming = DaskCluster(n_workers=2, threads_per_worker=1, processes=True, trim_worker_memory=True)
        summary = sweep(params, workspace.model_copy(update={"cluster": trimming}) if trimmed else workspace)
        result = summary.sweep
        print(
            f"sweep{' (trimmed workers)' if trimmed else ''}, pruner {pruner}: "
            f"flow {time.perf_counter() - started:.1f} s, trial phase "
            f"{result.timing.wall_seconds:.1f} s ({result.timing.parallelism:.2f} trials at once), "
            f"rounds {result.total_steps:,}, best roc_auc {result.best_value:.5f} (trial {result.best_trial})"
        )
        assert summary.training.splits.validation.content_hash == splits.validation.content_hash
        return result

    if args.only == "pruning":
        unpruned = swept("none")
    else:
        one_thread, baseline = sequential(threads=1)
        print(f"sequential study, 1 xgboost thread: {one_thread:.1f} s")
        unpruned = swept("none")
        floor = two_processes()
        print(f"two plain processes, 1 thread each: {floor:.1f} s")
        ratios = [unpruned.timing.wall_seconds / floor]
        trimmed = [swept("none", 0, trimmed=True).timing.wall_seconds / floor] if args.also_trimmed else []
        for run in range(1, args.rounds):
            again, again_floor = swept("none", run).timing.wall_seconds, two_processes()
            print(f"round {run + 1}: two plain processes {again_floor:.1f} s; ratio {again / again_floor:.3f}")
            ratios.append(again / again_floor)
            if args.also_trimmed:
                trimmed.append(swept("none", run, trimmed=True).timing.wall_seconds / again_floor)
        two_threads, _ = sequential(threads=2)
        print(f"sequential study, 2 xgboost threads: {two_threads:.1f} s")
        same = {row.trial: (row.params, row.value) for row in unpruned.leaderboard}
        assert {n: p for n, (p, _) in same.items()} == {n: p for n, (p, _) in baseline.items()}, "different trials"
        worst = max(abs((same[n][1] or 0.0) - value) for n, (_, value) in baseline.items())
        print(f"the sweep and the sequential study ran the same {len(same)} trials; largest score gap {worst:.2g}")
        wall = unpruned.timing.wall_seconds
        print(f"RATIO sweep trial phase / sequential (1 thread)   = {wall / one_thread:.3f}  (goal ≤ 0.57)")
        print(f"RATIO two plain processes / sequential (1 thread) = {floor / one_thread:.3f}  (the machine's floor)")
        print(f"RATIO sweep trial phase / two plain processes   = {wall / floor:.3f}  (goal ≤ 1.05)")
        if args.rounds > 1:
            shown = ", ".join(f"{ratio:.3f}" for ratio in ratios)
            print(f"RATIO median of {args.rounds} rounds ({shown})  = {statistics.median(ratios):.3f}  (goal ≤ 1.05)")
        if trimmed:
            shown = ", ".join(f"{ratio:.3f}" for ratio in trimmed)
            median = statistics.median(trimmed)
            print(f"RATIO sweep on trimmed workers / two plain processes, median ({shown}) = {median:.3f}")
        print(f"RATIO sweep trial phase / sequential (2 threads)  = {wall / two_threads:.3f}")
    if args.only == "parallel":
        return
    for pruner, goal in (("median", 0.6), ("halving", 0.3), ("hyperband", 0.3)):
        result = swept(pruner)
        rounds = result.total_steps / unpruned.total_steps
        gap = (unpruned.best_value - result.best_value) / unpruned.best_value
        print(f"RATIO rounds {pruner} / none = {rounds:.3f}  (goal ≤ {goal}); best score gap {gap:+.3%} (goal ≤ 0.5%)")


if __name__ == "__main__":
    main()
