"""Evaluation protocols: frozen features of labelled splits -> accuracy metrics.

A protocol is a function

  protocol(feats, labels, *, options, seed, full) -> {metric: float}

`feats` is `{split: feats_NxD}` (float32 NumPy), `labels` `{split: labels_N}`
with the same splits, `options` a dict of settings (from the config node
named like the evaluation, e.g. `config.probe`), `seed` the run's seed, and
`full` False for the quick periodic check during training, True for the
final evaluation. Adding a protocol is one function plus `register(name, fn)`
here; a method names it in its `mi_jax.objectives.Evaluation(protocol=name)`.

Registered:
  "probe"  splits "train" / "test": `linear_acc` (multinomial logistic
           regression, options C, steps); with `full` also `knn_acc` (k-NN,
           option knn_k) and, with option `mlp`, `mlp_acc` (options
           mlp_hidden, mlp_dropout, mlp_epochs).
"""

from typing import Callable

from mi_jax.evaluation import knn as knn_lib
from mi_jax.evaluation import probe as probe_lib

_PROTOCOLS: dict[str, Callable] = {}


def register(name: str, fn: Callable) -> None:
  """Makes `Evaluation(protocol=name)` run `fn` (names are unique)."""
  if name in _PROTOCOLS and _PROTOCOLS[name] is not fn:
    raise ValueError(f"evaluation protocol {name!r} is already registered")
  _PROTOCOLS[name] = fn


def get(protocol) -> Callable:
  """The protocol function of a registered name (a callable is returned as is)."""
  if callable(protocol):
    return protocol
  if protocol not in _PROTOCOLS:
    raise ValueError(f"unknown evaluation protocol {protocol!r}; registered: "
                     f"{sorted(_PROTOCOLS)} (add one with "
                     "mi_jax.evaluation.protocols.register)")
  return _PROTOCOLS[protocol]


def _need(feats, labels, splits, name):
  missing = [s for s in splits if s not in feats or s not in labels]
  if missing:
    raise ValueError(f"the {name!r} protocol needs the splits {splits}; the "
                     f"evaluation lacks {missing}")


def linear_knn_probe(feats, labels, *, options, seed, full) -> dict:
  """Linear probe (and with `full` kNN, optional MLP probe) trained on "train", scored on "test"."""
  _need(feats, labels, ("train", "test"), "probe")
  args = (feats["train"], labels["train"], feats["test"], labels["test"])
  out = {"linear_acc": float(probe_lib.linear_probe(
      *args, C=options.get("C", 10.0), steps=options.get("steps", 1000)))}
  if full:
    out["knn_acc"] = float(knn_lib.knn_accuracy(
        *args, k=options.get("knn_k", 5)))
    if options.get("mlp", False):
      out["mlp_acc"] = float(probe_lib.mlp_probe(
          *args, hidden=options.get("mlp_hidden", 200),
          dropout=options.get("mlp_dropout", 0.5),
          epochs=options.get("mlp_epochs", 50), seed=seed))
  return out


register("probe", linear_knn_probe)
