"""Linear classifiers on fixed features, their metrics, and the confusion-matrix figure.

Features are L2-normalised rows, x <- x / ||x||_2, so every image weighs the same and the
regularisation strength C means the same for every backbone. The regularisation strength is chosen
by stratified k-fold cross-validation on the training split only, scoring mean-per-class accuracy;
the test split is touched once, by the final fit's predictions.
"""
from __future__ import annotations

import warnings

import numpy as np

DEFAULT_C_GRID = tuple(float(c) for c in np.logspace(-1, 3, 9))   # 0.1 ... 1000, half-decade steps


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of x (N, D) scaled to unit Euclidean norm; all-zero rows stay zero."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), eps)


def per_class_accuracy(y_true, y_pred, n_classes: int) -> np.ndarray:
    """acc_k = #{i: y_i = k and yhat_i = k} / #{i: y_i = k}, shape (n_classes,); NaN for absent classes."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    support = np.bincount(y_true, minlength=n_classes).astype(np.float64)
    correct = np.bincount(y_true[y_true == y_pred], minlength=n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(support > 0, correct / support, np.nan)


def mean_per_class_accuracy(y_true, y_pred, n_classes: int | None = None) -> float:
    """(1/K) sum_k acc_k over the K classes present in y_true: every breed counts the same,
    however many test images it has (equals balanced accuracy, the mean per-class recall)."""
    y_true = np.asarray(y_true)
    if y_true.size == 0:
        raise ValueError("mean_per_class_accuracy of an empty set")
    n = int(max(np.max(y_true), np.max(y_pred))) + 1 if n_classes is None else n_classes
    return float(np.nanmean(per_class_accuracy(y_true, y_pred, n)))


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """M[t, p] = number of images of true class t predicted as p, shape (K, K) int64."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(y_true), np.asarray(y_pred)), 1)
    return m


def most_confused_pairs(cm: np.ndarray, class_names, top: int = 10) -> list[dict]:
    """Unordered pairs {a, b} ranked by the errors between them, M[a,b] + M[b,a], counts and rates."""
    k = cm.shape[0]
    support = cm.sum(axis=1)
    pairs = []
    for a in range(k):
        for b in range(a + 1, k):
            n = int(cm[a, b] + cm[b, a])
            if n:
                pairs.append({"a": class_names[a], "b": class_names[b], "errors": n,
                              "a_as_b": int(cm[a, b]), "b_as_a": int(cm[b, a]),
                              "n_a": int(support[a]), "n_b": int(support[b])})
    pairs.sort(key=lambda p: (-p["errors"], p["a"], p["b"]))
    return pairs[:top]


def _make_sklearn(kind: str, C: float, seed: int, class_weight):
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression
        # lbfgs on the multinomial (softmax) loss; with unit-norm inputs C of 10-100 is typical
        return LogisticRegression(C=C, max_iter=3000, tol=1e-5, class_weight=class_weight, random_state=seed)
    if kind == "svm":
        from sklearn.svm import LinearSVC
        # one-vs-rest squared hinge (Crammer-Singer is slower and no better here)
        return LinearSVC(C=C, max_iter=20000, class_weight=class_weight, random_state=seed)
    raise ValueError(f"unknown classifier {kind!r}; expected 'logreg' or 'svm'")


def cross_validate_C(kind: str, x, y, c_grid=DEFAULT_C_GRID, folds: int = 5, seed: int = 0,
                     class_weight="balanced", n_jobs: int = 1) -> tuple[float, list[dict]]:
    """Pick C by stratified `folds`-fold CV on (x, y) = the training split, scoring mean-per-class accuracy.

    Returns (best C, [{"C", "cv_mean_per_class_accuracy", "cv_std"}...]). Ties go to the smaller C
    (stronger regularisation). Folds shrink to the rarest class's count if it has fewer images.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    y = np.asarray(y)
    folds = int(max(2, min(folds, np.bincount(y)[np.bincount(y) > 0].min())))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    table = []
    for C in c_grid:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UserWarning)
            s = cross_val_score(_make_sklearn(kind, C, seed, class_weight), x, y, cv=cv,
                                scoring="balanced_accuracy", n_jobs=n_jobs)
        table.append({"C": float(C), "cv_mean_per_class_accuracy": float(s.mean()), "cv_std": float(s.std())})
    best = max(table, key=lambda r: (round(r["cv_mean_per_class_accuracy"], 10), -r["C"]))
    return best["C"], table


def fit_predict(kind: str, x_train, y_train, x_test, C: float, seed: int = 0, class_weight="balanced"):
    """Fit on the training split with this C and return test predictions (N_test,) int64."""
    clf = _make_sklearn(kind, C, seed, class_weight)
    clf.fit(x_train, y_train)
    return np.asarray(clf.predict(x_test), dtype=np.int64)


def plot_confusion(cm: np.ndarray, class_names, path, title: str) -> None:
    """Row-normalised confusion matrix (each true breed's row sums to 1) as a PNG heat map."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(0.28 * k + 3, 0.28 * k + 2.5))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted breed")
    ax.set_ylabel("true breed")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, label="fraction of the true breed's test images")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
