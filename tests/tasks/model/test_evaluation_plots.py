"""The evaluation's plots: the confusion matrix counts what scikit-learn counts, over the labels of either side."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix

from mlpipe.tasks.model.evaluate import _confusion

pytestmark = pytest.mark.unit


def test_the_confusion_matrix_counts_label_pairs_like_scikit_learn_including_labels_never_predicted():
    rng = np.random.default_rng(3)
    truth = pd.Series(rng.choice(["no", "yes", "maybe"], 5_000))
    predicted = pd.Series(rng.choice(["no", "yes"], 5_000))
    matrix, labels = _confusion(truth, predicted)
    assert labels == ["maybe", "no", "yes"]
    np.testing.assert_array_equal(matrix, confusion_matrix(truth, predicted, labels=labels))


def test_integer_labels_are_compared_as_text_like_the_predictions_they_come_with():
    matrix, labels = _confusion(pd.Series([0, 1, 1, 10]), pd.Series(["0", "1", "0", "10"]))
    assert labels == ["0", "1", "10"]
    assert matrix.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
