"""Transductive node classification on frozen node embeddings (DGI's protocol).

Logistic regression (`mi_jax.evaluation.linear_probe`, scikit-learn's C
objective, no feature scaling) is fit on the training nodes of the standard
Planetoid split for every C of a grid; the C with the best validation
accuracy is kept and its test accuracy reported. The test nodes never pick
anything.
"""
from typing import Sequence

import numpy as np

from mi_jax.evaluation import protocols
from mi_jax.evaluation.probe import linear_probe

DEFAULT_CS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)


def _accuracy(params, x_MxD, y_M):
  logits_MxK = ((x_MxD - params["shift"]) / params["scale"]) @ params["w"]
  return float(np.mean(np.argmax(logits_MxK + params["b"], -1) == y_M))


def node_classification(feats_NxD, labels_N, train_idx, val_idx, test_idx, *,
                        Cs: Sequence[float] = DEFAULT_CS,
                        scaling: str = "none") -> dict:
  """Test accuracy of logistic regression with C chosen on the validation nodes.

  Returns:
    {"test_acc", "val_acc", "C"} for the C with the highest validation
    accuracy (the smallest such C on ties).
  """
  x_NxD = np.asarray(feats_NxD, np.float32)
  y_N = np.asarray(labels_N)
  if len(x_NxD) != len(y_N):
    raise ValueError(f"{len(x_NxD)} embeddings but {len(y_N)} labels.")
  if np.any(y_N[np.concatenate([train_idx, val_idx, test_idx])] < 0):
    raise ValueError("A train/val/test node has no label (-1).")
  best = None
  for c in Cs:
    _, params = linear_probe(x_NxD[train_idx], y_N[train_idx], x_NxD[val_idx],
                             y_N[val_idx], C=c, scaling=scaling,
                             return_params=True)
    val = _accuracy(params, x_NxD[val_idx], y_N[val_idx])
    if best is None or val > best["val_acc"]:
      best = {"val_acc": val, "C": float(c),
              "test_acc": _accuracy(params, x_NxD[test_idx], y_N[test_idx])}
  return best


def node_classification_protocol(feats, labels, *, options, seed, full):
  """Engine protocol: split "graph" (all nodes); options train/val/test_idx, Cs."""
  del seed, full
  r = node_classification(feats["graph"], labels["graph"],
                          options["train_idx"], options["val_idx"],
                          options["test_idx"],
                          Cs=tuple(options.get("Cs", DEFAULT_CS)))
  return {"test_acc": r["test_acc"], "val_acc": r["val_acc"], "C": r["C"]}


protocols.register("node_classification", node_classification_protocol)
