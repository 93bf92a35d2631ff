"""k-nearest-neighbour classification accuracy on frozen features."""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from mi_jax.evaluation import checks

METRICS = ("cosine", "l2")


@functools.partial(jax.jit, static_argnames=("k", "num_classes"))
def _predict_chunk(test_CxD, train_NxD, train_sqnorm_N, train_N, *, k,
                   num_classes):
  """Majority vote of the k most similar train rows for each test row."""
  # For L2, -||x - y||^2 = 2 x.y - ||y||^2 - ||x||^2; the last term is constant
  # per test row, so it does not change the ranking. For cosine the rows are
  # unit-normalised and train_sqnorm_N is zero.
  sim_CxN = 2.0 * test_CxD @ train_NxD.T - train_sqnorm_N
  _, nbr_CxK = jax.lax.top_k(sim_CxN, k)
  votes_CxL = jax.nn.one_hot(train_N[nbr_CxK], num_classes).sum(axis=1)
  return jnp.argmax(votes_CxL, axis=-1)  # ties -> the smallest label


def knn_predict(train_feats_NxD, train_labels_N, test_feats_MxD, *, k=20,
                metric="cosine", chunk_size=1024):
  """Predicted labels [M] of a k-NN majority vote (ties -> smallest label).

  `metric`: "cosine" (largest cosine similarity) or "l2" (smallest Euclidean
  distance). The test set is processed in chunks of `chunk_size` rows, so the
  memory is O(chunk_size x N) whatever M is.
  """
  if metric not in METRICS:
    raise ValueError(f"metric must be one of {METRICS}, got {metric!r}.")
  train_NxD, train_N, test_MxD, _ = checks.check_features(
      train_feats_NxD, train_labels_N, test_feats_MxD,
      np.zeros(len(test_feats_MxD), np.int32))
  if not 1 <= k <= len(train_N):
    raise ValueError(f"k must be in [1, {len(train_N)}], got {k}.")
  if metric == "cosine":
    normalize = lambda x: x / np.maximum(
        np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    train_NxD, test_MxD = normalize(train_NxD), normalize(test_MxD)
    sqnorm_N = np.zeros(len(train_N), np.float32)
  else:
    sqnorm_N = (train_NxD.astype(np.float64) ** 2).sum(1).astype(np.float32)
  chunk_size = min(int(chunk_size), len(test_MxD))
  predict = functools.partial(
      _predict_chunk, train_NxD=jnp.asarray(train_NxD),
      train_sqnorm_N=jnp.asarray(sqnorm_N), train_N=jnp.asarray(train_N),
      k=int(k), num_classes=int(train_N.max()) + 1)
  preds = []
  for start in range(0, len(test_MxD), chunk_size):
    chunk_CxD = test_MxD[start:start + chunk_size]
    pad = chunk_size - len(chunk_CxD)  # one compiled shape for every chunk
    chunk_CxD = np.pad(chunk_CxD, ((0, pad), (0, 0)))
    preds.append(np.asarray(predict(jnp.asarray(chunk_CxD)))[:chunk_size - pad])
  return np.concatenate(preds)


def knn_accuracy(train_feats_NxD, train_labels_N, test_feats_MxD,
                 test_labels_M, *, k=20, metric="cosine", chunk_size=1024):
  """Test accuracy of k-NN classification (see `knn_predict`)."""
  _, _, _, test_M = checks.check_features(
      train_feats_NxD, train_labels_N, test_feats_MxD, test_labels_M)
  preds_M = knn_predict(train_feats_NxD, train_labels_N, test_feats_MxD, k=k,
                        metric=metric, chunk_size=chunk_size)
  return float(np.mean(preds_M == test_M))
