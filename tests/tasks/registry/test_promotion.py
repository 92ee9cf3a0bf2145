"""The champion moves only by compare-and-set: concurrent trainings end with the better model and a true history."""

import threading
from dataclasses import dataclass

import pandas as pd
import pytest

from mlpipe.blocks import Datastore, GatePolicy, MlflowConnection
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.data.split import SplitRefs, SplitSpec, split
from mlpipe.tasks.data.validate import validate
from mlpipe.tasks.model.evaluate import Evaluation, evaluate
from mlpipe.tasks.model.families import ModelSpec
from mlpipe.tasks.model.train import TrainedModel, train
from mlpipe.tasks.registry.aliases import CHAMPION, alias_history, champion_version
from mlpipe.tasks.registry.gate import GateDecision, gate
from mlpipe.tasks.registry.lock import aliases_lock
from mlpipe.tasks.registry.register import Promotion, promote, register
from tests.pipeline import ingest_frame

pytestmark = pytest.mark.unit

STRENGTHS = {
    "weak": {"n_estimators": 2, "max_depth": 1},
    "middling": {"n_estimators": 6, "max_depth": 2},
    "strong": {"n_estimators": 60, "max_depth": 4},
}


@dataclass
class Candidate:
    model: TrainedModel
    evaluation: Evaluation


@dataclass
class Bench:
    tracking: MlflowConnection
    store: Datastore
    contract: DataContract
    splits: SplitRefs
    dataset_ref: object
    candidates: dict[str, Candidate]

    def gate(self, name: str, which: str) -> GateDecision:
        evaluation = self.candidates[which].evaluation
        return gate(evaluation, self.splits, self.contract, name, GatePolicy(), self.tracking, self.store)

    def register_and_promote(self, name: str, which: str, decision: GateDecision) -> Promotion:
        candidate = self.candidates[which]
        registration = register(candidate.model, candidate.evaluation, self.dataset_ref, name, self.tracking)  # type: ignore[arg-type]
        return promote(
            registration,
            decision,
            evaluation=candidate.evaluation,
            splits=self.splits,
            contract=self.contract,
            policy=GatePolicy(),
            tracking=self.tracking,
            store=self.store,
        )

    def version_of(self, name: str, which: str) -> str:
        run_id = self.candidates[which].model.run_id
        return str(self.tracking.client().search_model_versions(f"name = '{name}' and run_id = '{run_id}'")[0].version)


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory, demo_frame: pd.DataFrame) -> Bench:
    """Three models of one experiment, trained and evaluated once on the same test set, on MLflow with SQLite."""
    root = tmp_path_factory.mktemp("promotion")
    tracking = MlflowConnection(
        tracking_uri=f"sqlite:///{root / 'mlflow.db'}", artifact_location=(root / "artifacts").as_uri()
    ).resolve()
    store = Datastore(url=str(root / "store")).resolve()
    frame = demo_frame.head(1_500).drop(columns=["application_id"])
    raw = ingest_frame(frame, root / "data.parquet", store)
    contract = infer_contract(frame, "default")
    dataset = validate(raw, contract, store)
    splits = split(dataset, contract, SplitSpec(), store)
    candidates = {}
    for which, params in STRENGTHS.items():
        model = train(splits, contract, ModelSpec(params=params), "promotion", tracking, store)
        candidates[which] = Candidate(model, evaluate(model, splits, contract, tracking, store))
    scores = [candidates[w].evaluation.metrics["roc_auc"] for w in ("weak", "middling", "strong")]
    assert scores == sorted(scores) and len(set(scores)) == 3, scores
    return Bench(tracking, store, contract, splits, dataset, candidates)


def assert_true_history(bench: Bench, name: str) -> None:
    """Each move recorded once, from the version that held the alias just before."""
    history = alias_history(name, bench.tracking)
    held = None
    for change in history:
        assert change.previous == held and change.version != held, history
        held = change.version
    assert held == champion_version(name, bench.tracking)


def test_a_candidate_judged_against_a_champion_that_moved_is_judged_again(bench: Bench):
    name = "stale-gate"
    decisions = {which: bench.gate(name, which) for which in ("strong", "middling", "weak")}
    assert all(d.passed and d.champion_version is None for d in decisions.values())  # all judged before any promotion

    results = {which: bench.register_and_promote(name, which, decisions[which]) for which in decisions}

    strong = bench.version_of(name, "strong")
    assert champion_version(name, bench.tracking) == strong
    for which in ("middling", "weak"):
        assert not results[which].decision.passed
        assert results[which].decision.champion_version == strong
        assert CHAMPION not in results[which].registration.aliases
        tags = bench.tracking.client().get_model_version(name, bench.version_of(name, which)).tags
        assert tags["mlpipe.gate"] == "rejected"
    assert [(c.version, c.previous) for c in alias_history(name, bench.tracking)] == [(strong, None)]


@pytest.mark.parametrize("round_", [1, 2])
def test_concurrent_trainings_end_with_the_better_model_and_a_true_history(bench: Bench, round_: int):
    name = f"concurrent-{round_}"
    judged = threading.Barrier(len(STRENGTHS))
    errors: list[BaseException] = []

    def training(which: str) -> None:
        try:
            decision = bench.gate(name, which)
            judged.wait(timeout=60)  # every candidate judged against the same champion, then all promote at once
            bench.register_and_promote(name, which, decision)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=training, args=(which,)) for which in STRENGTHS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert champion_version(name, bench.tracking) == bench.version_of(name, "strong")
    assert_true_history(bench, name)


def test_a_retry_after_the_alias_moved_but_before_its_record_completes_the_history_once(bench: Bench):
    name = "history-retry"
    client = bench.tracking.client()
    first = bench.gate(name, "middling")
    bench.register_and_promote(name, "middling", first.model_copy(update={"passed": False}))  # registered only
    middling = bench.version_of(name, "middling")
    client.set_registered_model_alias(name, CHAMPION, middling)  # the attempt died before recording its move
    for _ in range(2):  # the retry, and a retry of the retry
        bench.register_and_promote(name, "middling", first)
    assert [(c.version, c.previous, c.by) for c in alias_history(name, bench.tracking)] == [
        (middling, None, "mlpipe gate")
    ]

    second = bench.gate(name, "strong")
    assert second.passed and second.champion_version == middling
    bench.register_and_promote(name, "strong", second.model_copy(update={"passed": False}))
    strong = bench.version_of(name, "strong")
    client.set_registered_model_alias(name, CHAMPION, strong)  # again moved, not recorded
    for _ in range(2):
        bench.register_and_promote(name, "strong", second)
    assert [(c.version, c.previous) for c in alias_history(name, bench.tracking)] == [
        (middling, None),
        (strong, middling),
    ]
    assert_true_history(bench, name)


def test_a_rerun_of_the_champions_registration_writes_nothing_and_waits_for_no_other_writer(bench: Bench):
    name = "rerun-champion"
    decision = bench.gate(name, "strong")
    first = bench.register_and_promote(name, "strong", decision)
    assert first.registration.aliases == ["challenger", "champion"]
    history = alias_history(name, bench.tracking)
    again = bench.gate(name, "strong")  # the gate of a cached re-run: the candidate is the champion
    finished: list[Promotion] = []
    with aliases_lock(name, bench.tracking):  # another writer holds the model's aliases meanwhile
        rerun = threading.Thread(target=lambda: finished.append(bench.register_and_promote(name, "strong", again)))
        rerun.start()
        rerun.join(timeout=10)
        waited = rerun.is_alive()
    rerun.join()
    assert not waited, "the re-run waited for the aliases lock although it had nothing to move"
    assert finished[0].registration.model_dump() == first.registration.model_dump()
    assert alias_history(name, bench.tracking) == history
