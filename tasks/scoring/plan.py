"""Planning a scoring run: the inputs, their mini-batches and the run's identity, checked before anything is written."""

import hashlib

from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.data.columns import check_schema
from mlpipe.tasks.data.files import Batch, InputFile, inputs_fingerprint, list_inputs, read_layout
from mlpipe.tasks.registry.model_ref import ResolvedModel


class ScoringPlan(BaseModel):
    """The inputs, their batches and the run's identity, checked before anything is written."""

    model: ResolvedModel
    inputs: list[InputFile]
    batches: list[Batch]
    extra_columns: list[str]
    run_key: str
    partition: str


def plan_scoring(
    model: ResolvedModel, source: str, mini_batch_size: int, passthrough: list[str], partition: str | None
) -> ScoringPlan:
    """List and inspect the inputs, cut them into batches and check them against the model's signature.

    The run key identifies the model version, every input file's identity and the batching:
    a re-run with the same key continues (or finds published) the same output.

    Raises:
        DataError: no input, or a column missing or of the wrong type (named with its file).
    """
    files: list[InputFile] = []
    batches: list[Batch] = []
    for listed in list_inputs(source):
        described, cut = read_layout(listed, mini_batch_size, len(batches))
        files.append(described)
        batches.extend(cut)
    extra = check_schema(files, model.inputs, passthrough)
    identity = "\n".join([model.uri, inputs_fingerprint(files), str(mini_batch_size), ",".join(passthrough)])
    run_key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return ScoringPlan(
        model=model,
        inputs=files,
        batches=batches,
        extra_columns=extra,
        run_key=run_key,
        partition=partition or run_key,
    )


plan_task = pipeline_task(plan_scoring, cache_policy=NO_CACHE)
