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


CLASSIFIERS = ("logreg", "svm", "scratchnet")


def balanced_weights(y: np.ndarray, n_classes: int) -> np.ndarray:
    """w_k = N / (K_present * n_k): every class carries the same total weight (sklearn's 'balanced')."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    present = counts > 0
    w = np.zeros(n_classes)
    w[present] = len(y) / (present.sum() * counts[present])
    return w


class ScratchnetSoftmax:
    """Multinomial logistic regression trained with scratchnet's autograd and Adam, full batch.

    Minimises  L(W, b) = (1/N) sum_i w_{y_i} * (-log softmax(x_i W + b)_{y_i}) + ||W||^2 / (2 C N),
    which is sklearn's objective  C sum_i w_{y_i} CE_i + ||W||^2 / 2  divided by C N, so the same C means
    the same regularisation. x (N, D), W (D, K) starting at zero (the problem is convex), b (K,).
    A constant step of 0.3 for 500 steps matched sklearn's lbfgs optimum (same predictions) on unit-norm
    features up to C ~ 10 in our checks; at larger C it stops a little short, a mild extra regularisation.
    """

    def __init__(self, C: float = 1.0, steps: int = 500, lr: float = 0.3, class_weight="balanced"):
        self.C, self.steps, self.lr, self.class_weight = C, steps, lr, class_weight

    def fit(self, x, y, n_classes: int | None = None):
        from scratchnet import functional as F
        from scratchnet.autograd import Tensor
        from scratchnet.nn import Parameter
        from scratchnet.optim import Adam
        x = np.asarray(x, dtype=np.float32)
        y = np.asarray(y, dtype=np.int64)
        n, d = x.shape
        k = int(n_classes or y.max() + 1)
        w_cls = balanced_weights(y, k) if self.class_weight == "balanced" else np.ones(k)
        target = np.zeros((n, k), dtype=np.float32)        # one-hot scaled by the class weight, / N
        target[np.arange(n), y] = w_cls[y] / n
        self.W = Parameter(np.zeros((d, k), dtype=np.float32))
        self.b = Parameter(np.zeros(k, dtype=np.float32))
        xt, tt = Tensor(x), Tensor(target)
        l2 = 1.0 / (2.0 * self.C * n)
        opt = Adam([self.W, self.b], lr=self.lr)
        self.losses = []
        for _ in range(self.steps):
            opt.zero_grad()
            logp = F.log_softmax(F.linear(xt, self.W, self.b), axis=1)
            loss = -F.sum(logp * tt) + l2 * F.sum(self.W * self.W)
            loss.backward()
            opt.step()
            self.losses.append(float(loss.item()))
        return self

    def decision_function(self, x):
        return np.asarray(x, dtype=np.float32) @ self.W.data + self.b.data

    def predict(self, x):
        return np.argmax(self.decision_function(x), axis=1).astype(np.int64)


def make_classifier(kind: str, C: float, seed: int = 0, class_weight="balanced"):
    """An unfitted classifier with fit(x, y) / predict(x)."""
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression
        # lbfgs on the multinomial (softmax) loss; with unit-norm inputs C of 10-100 is typical
        return LogisticRegression(C=C, max_iter=3000, tol=1e-4, class_weight=class_weight, random_state=seed)
    if kind == "svm":
        from sklearn.svm import LinearSVC
        # one-vs-rest squared hinge (Crammer-Singer is slower and no better here)
        return LinearSVC(C=C, max_iter=20000, class_weight=class_weight, random_state=seed)
    if kind == "scratchnet":
        return ScratchnetSoftmax(C=C, class_weight=class_weight)
    raise ValueError(f"unknown classifier {kind!r}; expected one of {', '.join(CLASSIFIERS)}")


def fit_predict(kind: str, x_train, y_train, x_test, C: float, seed: int = 0, class_weight="balanced"):
    """Fit on the training split with this C and return test predictions (N_test,) int64."""
    clf = make_classifier(kind, C, seed, class_weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)   # sklearn's ConvergenceWarning at tiny C
        clf.fit(x_train, y_train)
    return np.asarray(clf.predict(x_test), dtype=np.int64)


def cross_validate_C(kind: str, x, y, c_grid=DEFAULT_C_GRID, folds: int = 5, seed: int = 0,
                     class_weight="balanced") -> tuple[float, list[dict]]:
    """Pick C by stratified `folds`-fold CV on (x, y) = the training split, scoring mean-per-class accuracy.

    Returns (best C, [{"C", "cv_mean_per_class_accuracy", "cv_std"}...]). Ties go to the smaller C
    (stronger regularisation). Folds shrink to the rarest class's count if it has fewer images.
    """
    from sklearn.model_selection import StratifiedKFold
    y = np.asarray(y)
    counts = np.bincount(y)
    folds = int(max(2, min(folds, counts[counts > 0].min())))
    splits = list(StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(x, y))
    table = []
    for C in c_grid:
        scores = [mean_per_class_accuracy(y[te], fit_predict(kind, x[tr], y[tr], x[te], C, seed, class_weight))
                  for tr, te in splits]
        table.append({"C": float(C), "cv_mean_per_class_accuracy": float(np.mean(scores)),
                      "cv_std": float(np.std(scores))})
    best = max(table, key=lambda r: (round(r["cv_mean_per_class_accuracy"], 10), -r["C"]))
    return best["C"], table


def plot_cv_curve(tables: dict, path, title: str) -> None:
    """Cross-validated mean-per-class accuracy against C (log axis), one line per classifier."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from problems.common.plots import save_figure
    fig, ax = plt.subplots(figsize=(4.2, 2.9))  # printed at half the text width (95 mm): fonts print near size
    for kind, table in tables.items():
        c = [r["C"] for r in table]
        m = np.array([r["cv_mean_per_class_accuracy"] for r in table])
        sd = np.array([r["cv_std"] for r in table])
        ax.errorbar(c, m, yerr=sd, marker="o", capsize=3, label=kind)
    ax.set_xscale("log")
    ax.set_xlabel("C (inverse regularisation strength)", fontsize=8.5)
    ax.set_ylabel("CV mean-per-class accuracy", fontsize=8.5)
    ax.tick_params(labelsize=8)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=120, bbox_inches=None)
    plt.close(fig)


def plot_confusion(cm: np.ndarray, class_names, path, title: str) -> None:
    """Row-normalised confusion matrix (each true breed's row sums to 1) as a PNG heat map."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from problems.common.plots import save_figure
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)
    k = len(class_names)
    # Drawn at the text width (6.9 in) it prints at, so the 7-pt breed names print at 7 pt.
    side = min(6.9, 0.16 * k + 2.6)
    fig, ax = plt.subplots(figsize=(side, side + 0.4))
    im = ax.imshow(norm, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(k), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(k), class_names, fontsize=7)
    ax.set_xlabel("predicted breed", fontsize=8.5)
    ax.set_ylabel("true breed", fontsize=8.5)
    ax.set_title(title, fontsize=9)
    bar = fig.colorbar(im, ax=ax, fraction=0.04)
    bar.set_label("fraction of the true breed's test images", fontsize=8)
    bar.ax.tick_params(labelsize=7.5)
    fig.tight_layout()
    save_figure(fig, path, dpi=120, bbox_inches=None)
    plt.close(fig)
