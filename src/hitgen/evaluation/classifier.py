"""The classifier test of every detector: a gradient-boosted classifier told to separate
reference events from candidate events; its ROC AUC on held-out events (0.5: indistinguishable).

Paired split: when the candidate was generated for the reference's own conditions, event i of each
is a pair, and both members go to the same half. Split independently, a pair's two members would
land in different halves, and with the conditions among the features the classifier learns "this
momentum was reference in training" and is then wrong on its twin: the AUC falls below 0.5
(measured on `make demo`'s 3000 events: shower positions alone 0.383 unpaired, 0.513 paired).
"""

from __future__ import annotations

import numpy as np

CLASSIFIER_SEED = 0
CLASSIFIER_SETTINGS = dict(max_iter=200, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=20, early_stopping=False)


def classifier_auc(x_ref: np.ndarray, x_cand: np.ndarray, conditions: np.ndarray | None = None, seed: int = CLASSIFIER_SEED) -> float:
    """AUC of the classifier trained on half of the events of each sample and scored on the other
    halves; both samples are cut to the same size first.

    conditions: given when rows i of x_ref and x_cand were made for the same conditions (one row of
    `conditions` per event): then every event of one value of the conditions, in either sample, goes
    to the same half (a pair, or all events that share their conditions), so that no shower is
    seen with one label in training and its twin with the other in the test."""
    from sklearn.ensemble import HistGradientBoostingClassifier  # slow to import: only when needed
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    if conditions is not None:
        if not len(x_ref) == len(x_cand) == len(conditions):
            raise ValueError("a paired split needs samples of the same size as their conditions")
        _, group = np.unique(np.asarray(conditions).reshape(len(conditions), -1), axis=0, return_inverse=True)
        first = rng.permutation(group.max() + 1)[: (group.max() + 1) // 2]
        train = np.isin(group.ravel(), first)
        x_train, x_test = np.vstack([x_ref[train], x_cand[train]]), np.vstack([x_ref[~train], x_cand[~train]])
        y_train = np.r_[np.zeros(train.sum()), np.ones(train.sum())]
        y_test = np.r_[np.zeros((~train).sum()), np.ones((~train).sum())]
    else:
        n = min(len(x_ref), len(x_cand))
        xr, xc = x_ref[rng.permutation(len(x_ref))[:n]], x_cand[rng.permutation(len(x_cand))[:n]]
        half = n // 2
        x_train = np.vstack([xr[:half], xc[:half]])
        y_train = np.r_[np.zeros(half), np.ones(half)]
        x_test = np.vstack([xr[half:], xc[half:]])
        y_test = np.r_[np.zeros(n - half), np.ones(n - half)]
    clf = HistGradientBoostingClassifier(random_state=seed, **CLASSIFIER_SETTINGS)
    clf.fit(x_train, y_train)
    return float(roc_auc_score(y_test, clf.predict_proba(x_test)[:, 1]))


def auc_standard_error(n_test_per_class: int) -> float:
    """The standard error of the AUC of an uninformative classifier with n test events per class
    (Mann-Whitney: sqrt((2n + 1) / (12 n^2)))."""
    n = n_test_per_class
    return float(np.sqrt((2 * n + 1) / (12 * n * n)))
