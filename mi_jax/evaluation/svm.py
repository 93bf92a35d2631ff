"""Graph classification by SVM over the provided k folds (InfoGraph's protocol).

For each outer fold (train_idx, test_idx) an SVM (scikit-learn's `SVC`) is
fit on the training graphs with C picked by an inner stratified k-fold
cross-validation on those training graphs only (grid 10^-3 .. 10^3, as in
the InfoGraph reference), then scored once on the test graphs. The test fold
chooses nothing: not C, not the training epoch (fixed by the caller).

The RBF width: the reference's `SVC()` ran under scikit-learn <= 0.21 (its
experiments date from 2019; 0.22, Dec 2019, changed the default), whose
default gamma was "auto" = 1 / n_features; scikit-learn >= 0.22's default is
"scale" = 1 / (n_features * X.var()). A fixed gamma ("auto" or a number)
does not depend on the data, so the Gram matrix
K[i, j] = exp(-gamma ||x_i - x_j||^2) is computed once for all folds and
every SVC runs on its precomputed blocks (the same classifier, without
recomputing kernel rows in every one of the 10 x (5 x |Cs| + 1) fits).
"""
from typing import Sequence

import numpy as np

from mi_jax.evaluation import protocols

DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


def rbf_gram(x_GxD, gamma: float) -> np.ndarray:
  """K[i, j] = exp(-gamma ||x_i - x_j||^2) in float64, [G, G]."""
  x = np.asarray(x_GxD, np.float64)
  sq_G = np.einsum("gd,gd->g", x, x)
  d2_GxG = np.maximum(sq_G[:, None] + sq_G[None, :] - 2 * x @ x.T, 0.0)
  np.fill_diagonal(d2_GxG, 0.0)
  return np.exp(-gamma * d2_GxG)


def svm_kfold(x, labels_G, folds, *, kernel: str = "rbf",
              Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 5,
              seed: int = 0, gamma="scale") -> dict:
  """Accuracy on each outer fold of an inner-CV-tuned SVM.

  Args:
    x: features [G, D], or with `kernel="precomputed"` a Gram matrix [G, G].
    labels_G: class ids.
    folds: sequence of (train_idx, test_idx) graph-id arrays.
    kernel: an `SVC` kernel ("rbf" = the reference's `SVC()`, "linear") or
      "precomputed".
    Cs: the grid of C values searched on the training fold.
    inner_folds: folds of the inner `StratifiedKFold` (shuffled with `seed`).
    gamma: RBF width: "scale" (scikit-learn >= 0.22 default, from each
      training fold's variance), "auto" (1 / D, the reference's) or a float;
      a fixed gamma runs on a precomputed `rbf_gram`.

  Returns:
    {"fold_acc": [k] accuracies, "mean", "std", "C": [k] chosen C}.
  """
  y_G = np.asarray(labels_G)
  x, kernel = _prepare(x, y_G, kernel, gamma)
  accs, chosen = [], []
  for train_idx, test_idx in folds:
    search = _inner_search(x, y_G, train_idx, kernel, Cs, inner_folds, seed)
    accs.append(_test_acc(search, x, y_G, train_idx, test_idx, kernel))
    chosen.append(float(search.best_params_["C"]))
  accs = np.asarray(accs)
  return {"fold_acc": accs.tolist(), "mean": float(accs.mean()),
          "std": float(accs.std()), "C": chosen}


def _prepare(x, y_G, kernel, gamma):
  """Checks shapes; a fixed RBF gamma becomes a precomputed Gram matrix."""
  x = np.asarray(x, np.float64)
  if len(x) != len(y_G) or (kernel == "precomputed" and x.shape != (len(y_G),) * 2):
    raise ValueError(f"features {x.shape} do not match {len(y_G)} labels "
                     f"(kernel={kernel!r}).")
  if kernel == "rbf" and gamma != "scale":
    width = 1.0 / x.shape[1] if gamma == "auto" else float(gamma)
    if not (np.isfinite(width) and width > 0):
      raise ValueError(f"gamma must be 'scale', 'auto' or a positive number, "
                       f"got {gamma!r}.")
    x, kernel = rbf_gram(x, width), "precomputed"
  return x, kernel


def _inner_search(x, y_G, train_idx, kernel, Cs, inner_folds, seed):
  """GridSearchCV over C on the training graphs only (refit on all of them).

  Only rows (and, precomputed, columns) `train_idx` of `x` are passed in.
  """
  from sklearn.model_selection import GridSearchCV, StratifiedKFold  # pylint: disable=g-import-not-at-top
  from sklearn.svm import SVC  # pylint: disable=g-import-not-at-top
  inner = StratifiedKFold(inner_folds, shuffle=True, random_state=seed)
  search = GridSearchCV(SVC(kernel=kernel), {"C": list(Cs)}, cv=inner,
                        scoring="accuracy")
  if kernel == "precomputed":
    search.fit(x[np.ix_(train_idx, train_idx)], y_G[train_idx])
  else:
    search.fit(x[train_idx], y_G[train_idx])
  return search


def _test_acc(search, x, y_G, train_idx, test_idx, kernel):
  if kernel == "precomputed":
    pred = search.predict(x[np.ix_(test_idx, train_idx)])
  else:
    pred = search.predict(x[test_idx])
  return float(np.mean(pred == y_G[test_idx]))


def choose_by_inner_cv(cv_ExC, tol: float = 1e-12):
  """The (candidate, C) pair with the highest inner-CV accuracy.

  `cv_ExC[e, c]`: mean inner-CV accuracy (on the training fold only) of
  candidate e (e.g. the embeddings after epoch e) with C = Cs[c]. Ties
  (within `tol`) go to the LAST candidate (the latest epoch, closest to the
  epoch-fixed protocol), then to the smallest C (GridSearchCV's rule).
  """
  cv = np.asarray(cv_ExC, np.float64)
  best_E = cv.max(axis=1)
  e = int(np.flatnonzero(best_E >= best_E.max() - tol)[-1])
  c = int(np.flatnonzero(cv[e] >= best_E[e] - tol)[0])
  return e, c


def svm_kfold_nested(xs, labels_G, folds, *, kernel: str = "rbf",
                     Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 5,
                     seed: int = 0, gamma="scale") -> dict:
  """Nested CV over candidate feature sets (e.g. training epochs) and C.

  For each outer fold (train_idx, test_idx): every candidate `xs[e]` gets
  the inner CV of `svm_kfold` (the same inner folds) on the training graphs
  only, giving the accuracy of every (e, C); the pair with the highest
  inner-CV accuracy (`choose_by_inner_cv`) is chosen, its SVM (refit on the
  whole training fold) is scored once on the test graphs. The test fold
  chooses nothing.

  Besides, each candidate's own protocol accuracy (C by the inner CV, then
  the test fold) is returned as `test_acc_kxE`; its last column equals
  `svm_kfold(xs[-1], ...)`. Selecting a candidate by THOSE numbers would
  look at the test folds: they are for reference / diagnostics only and
  are never read by the choice.

  Returns:
    {"fold_acc": [k] test accuracy of the chosen pair, "mean", "std",
     "epoch": [k] chosen candidate, "C": [k] chosen C, "inner_acc": [k]
     its inner-CV accuracy, "cv_kxExC": inner-CV accuracies,
     "test_acc_kxE", "C_kxE": each candidate's C chosen by the inner CV}.
  """
  y_G = np.asarray(labels_G)
  k = len(folds)
  cv = [[] for _ in range(k)]      # [k][E] arrays over Cs
  test = [[] for _ in range(k)]    # [k][E]
  c_of = [[] for _ in range(k)]    # [k][E]
  for x in xs:                     # one Gram matrix in memory at a time
    x, kern = _prepare(x, y_G, kernel, gamma)
    for f, (train_idx, test_idx) in enumerate(folds):
      search = _inner_search(x, y_G, train_idx, kern, Cs, inner_folds, seed)
      cv[f].append(np.asarray(search.cv_results_["mean_test_score"]))
      c_of[f].append(float(search.best_params_["C"]))
      test[f].append(_test_acc(search, x, y_G, train_idx, test_idx, kern))
  picked = []
  for f in range(k):
    e, c = choose_by_inner_cv(cv[f])      # reads the training graphs' CV only
    # The test accuracy of candidate e is that of its refit with
    # GridSearchCV's C: the same C as Cs[c] (both: the smallest C of the
    # best inner score), checked here.
    if c_of[f][e] != float(Cs[c]):
      raise AssertionError(f"C mismatch {c_of[f][e]} vs {Cs[c]}")
    picked.append((e, c, float(cv[f][e][c]), test[f][e]))
  accs = np.asarray([p[3] for p in picked])
  return {"fold_acc": accs.tolist(), "mean": float(accs.mean()),
          "std": float(accs.std()), "epoch": [p[0] for p in picked],
          "C": [float(Cs[p[1]]) for p in picked],
          "inner_acc": [p[2] for p in picked],
          "cv_kxExC": [np.stack(c).tolist() for c in cv],
          "test_acc_kxE": test, "C_kxE": c_of}


def svm_protocol(feats, labels, *, options, seed, full):
  """Engine protocol: split "all" (every graph); options folds, kernel, Cs.

  Option `gamma` (default "scale") is the RBF width (see `svm_kfold`).
  Returns `acc` (mean over the folds) and `acc_fold_std`; with `full`, an
  option `wl` (a function returning the WL Gram matrix) and `wl_baseline`
  (default True), also `wl_acc`.
  """
  kw = dict(Cs=tuple(options.get("Cs", DEFAULT_CS)),
            inner_folds=options.get("inner_folds", 5), seed=seed)
  r = svm_kfold(feats["all"], labels["all"], options["folds"],
                kernel=options.get("kernel", "rbf"),
                gamma=options.get("gamma", "scale"), **kw)
  out = {"acc": r["mean"], "acc_fold_std": r["std"]}
  if (full and options.get("wl") is not None
      and options.get("wl_baseline", True)):
    w = svm_kfold(options["wl"](), labels["all"], options["folds"],
                  kernel="precomputed", **kw)
    out.update(wl_acc=w["mean"], wl_acc_fold_std=w["std"])
  return out


protocols.register("svm_kfold", svm_protocol)
