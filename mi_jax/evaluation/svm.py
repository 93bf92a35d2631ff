"""Graph classification by SVM over the provided k folds (InfoGraph's protocol).

For each outer fold (train_idx, test_idx) an SVM (scikit-learn's `SVC`) is
fit on the training graphs with C picked by an inner stratified k-fold
cross-validation on those training graphs only (grid 10^-3 .. 10^3, as in
the InfoGraph reference), then scored once on the test graphs. The test fold
chooses nothing: not C, not the training epoch (fixed by the caller).
"""
from typing import Sequence

import numpy as np

from mi_jax.evaluation import protocols

DEFAULT_CS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


def svm_kfold(x, labels_G, folds, *, kernel: str = "rbf",
              Cs: Sequence[float] = DEFAULT_CS, inner_folds: int = 5,
              seed: int = 0) -> dict:
  """Accuracy on each outer fold of an inner-CV-tuned SVM.

  Args:
    x: features [G, D], or with `kernel="precomputed"` a Gram matrix [G, G].
    labels_G: class ids.
    folds: sequence of (train_idx, test_idx) graph-id arrays.
    kernel: an `SVC` kernel ("rbf" = the reference's `SVC()`, "linear") or
      "precomputed".
    Cs: the grid of C values searched on the training fold.
    inner_folds: folds of the inner `StratifiedKFold` (shuffled with `seed`).

  Returns:
    {"fold_acc": [k] accuracies, "mean", "std", "C": [k] chosen C}.
  """
  from sklearn.model_selection import GridSearchCV, StratifiedKFold  # pylint: disable=g-import-not-at-top
  from sklearn.svm import SVC  # pylint: disable=g-import-not-at-top
  x = np.asarray(x, np.float64)
  y_G = np.asarray(labels_G)
  if len(x) != len(y_G) or (kernel == "precomputed" and x.shape != (len(y_G),) * 2):
    raise ValueError(f"features {x.shape} do not match {len(y_G)} labels "
                     f"(kernel={kernel!r}).")
  accs, chosen = [], []
  for train_idx, test_idx in folds:
    inner = StratifiedKFold(inner_folds, shuffle=True, random_state=seed)
    search = GridSearchCV(SVC(kernel=kernel), {"C": list(Cs)}, cv=inner,
                          scoring="accuracy")
    if kernel == "precomputed":
      search.fit(x[np.ix_(train_idx, train_idx)], y_G[train_idx])
      pred = search.predict(x[np.ix_(test_idx, train_idx)])
    else:
      search.fit(x[train_idx], y_G[train_idx])
      pred = search.predict(x[test_idx])
    accs.append(float(np.mean(pred == y_G[test_idx])))
    chosen.append(float(search.best_params_["C"]))
  accs = np.asarray(accs)
  return {"fold_acc": accs.tolist(), "mean": float(accs.mean()),
          "std": float(accs.std()), "C": chosen}


def svm_protocol(feats, labels, *, options, seed, full):
  """Engine protocol: split "all" (every graph); options folds, kernel, Cs.

  Returns `acc` (mean over the folds) and `acc_fold_std`; with `full`, an
  option `wl` (a function returning the WL Gram matrix) and `wl_baseline`
  (default True), also `wl_acc`.
  """
  kw = dict(Cs=tuple(options.get("Cs", DEFAULT_CS)),
            inner_folds=options.get("inner_folds", 5), seed=seed)
  r = svm_kfold(feats["all"], labels["all"], options["folds"],
                kernel=options.get("kernel", "rbf"), **kw)
  out = {"acc": r["mean"], "acc_fold_std": r["std"]}
  if (full and options.get("wl") is not None
      and options.get("wl_baseline", True)):
    w = svm_kfold(options["wl"](), labels["all"], options["folds"],
                  kernel="precomputed", **kw)
    out.update(wl_acc=w["mean"], wl_acc_fold_std=w["std"])
  return out


protocols.register("svm_kfold", svm_protocol)
