"""`mlpipe train`: ingest, validate, split, train, evaluate, gate and register one model."""

from pathlib import Path
from typing import Annotated, Any

import typer

from mlpipe.cli import options as opt
from mlpipe.cli.output import print_training, run
from mlpipe.cli.startup import preparing_flow


def train(
    data: opt.Data,
    target: opt.Target,
    name: opt.ModelName,
    task: opt.Task = None,
    model: Annotated[str | None, typer.Option(help=opt.FAMILIES)] = None,
    param: Annotated[list[str] | None, typer.Option(help="hyperparameter KEY=VALUE (repeatable)")] = None,
    config: Annotated[opt.ConfigFile, opt.config_option("mlflow/datastore/cluster/gate/training")] = None,
    time_column: opt.TimeColumn = None,
    time_split: opt.TimeSplit = False,
    exclude: opt.Exclude = None,
    sensitive: opt.Sensitive = None,
    contract: opt.Contract = None,
    seed: opt.Seed = None,
    device: opt.Device = None,
    distributed: Annotated[
        bool | None,
        typer.Option(
            help="xgboost across every worker of the cluster (default: from 2M training rows of a folder or large file)"
        ),
    ] = None,
    description: Annotated[
        str | None, typer.Option(help="what the model is for and who may use it (the model card's intended use)")
    ] = None,
) -> None:
    """Train, evaluate, gate and register a model."""
    options = {
        **opt.data_options(data, target, name, task, time_column, exclude, contract, sensitive),
        "device": device,
        "description": description,
    }
    run(
        lambda: train_model(
            config,
            options,
            model={"family": model, "params": opt.parse_params(param or []), "seed": seed, "distributed": distributed},
            split={"seed": seed, "time_ordered": time_split or None},
        )
    )


def train_model(
    config: Path | None,
    options: dict[str, Any],
    model: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
) -> None:
    """Run the training flow on the config file's `training` section with `options` over it; print the summary."""
    with preparing_flow():
        from mlpipe.blocks.config import run_config
        from mlpipe.errors import validated
        from mlpipe.flows.training import TrainingParams, training

        settings = run_config(config, "training", options, {"model": model or {}, "split": split or {}})
        params = validated(TrainingParams, settings.params, settings.source)
    print_training(training(params, settings.workspace))
