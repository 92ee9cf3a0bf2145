"""The baseline: the training steps as a plain script, with no orchestration, tracking or validation.

Same data, same split fractions, same preprocessing and estimator settings as the flow.
Run as `python -m tests.benchmarks.plain_training DATA TARGET [EXCLUDE...]`; prints the test ROC-AUC.
"""

import sys

import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.model.families import ModelSpec, build_estimator
from mlpipe.tasks.model.preprocessing import build_preprocessor
from mlpipe.workspace import available_cores


def main(path: str, target: str, exclude: list[str]) -> float:
    frame = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
    contract = infer_contract(frame, target, exclude=exclude)
    train, rest = train_test_split(frame, test_size=0.3, random_state=0, stratify=frame[target])
    validation, test = train_test_split(rest, test_size=0.5, random_state=0, stratify=rest[target])
    estimator = build_estimator(ModelSpec(), contract.task, n_jobs=available_cores())
    preprocessor = build_preprocessor(contract, "xgboost")
    x_train = preprocessor.fit_transform(train)
    estimator.fit(
        x_train, train[target], eval_set=[(preprocessor.transform(validation), validation[target])], verbose=False
    )
    return float(roc_auc_score(test[target], estimator.predict_proba(preprocessor.transform(test))[:, 1]))


if __name__ == "__main__":
    auc = main(sys.argv[1], sys.argv[2], sys.argv[3:])
    sys.stdout.write(f"roc_auc={auc:.4f}\n")
