"""Tests for mi_jax.evaluation: linear / MLP probes, kNN, pixel baseline."""
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import MinMaxScaler
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from mi_jax import data
from mi_jax import evaluation


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  # One folder per test session, shared by the data and evaluation tests:
  # mnist5k is prepared once (preparation is locked and idempotent).
  return str(tmp_path_factory.getbasetemp() / "mi_jax_tfds")


@pytest.fixture(scope="module")
def mnist5k(data_dir):
  return (data.load_arrays("mnist5k", "train", data_dir=data_dir),
          data.load_arrays("mnist5k", "test", data_dir=data_dir))


def _pooled(images_NxHxWx1):
  """4x4 mean-pooled MNIST, [N, 49]: keeps the scikit-learn reference fast."""
  n = len(images_NxHxWx1)
  return images_NxHxWx1.reshape(n, 7, 4, 7, 4).mean((2, 4)).reshape(n, 49)


def _blobs(n, d, classes, seed, spread=1.0):
  rng = np.random.default_rng(seed)
  centers = rng.normal(size=(classes, d)) * 2.0
  labels = rng.integers(0, classes, n)
  return (centers[labels] + spread * rng.normal(size=(n, d))).astype(
      np.float32), labels


@pytest.mark.parametrize("scaling,scaler,C", [
    ("minmax", MinMaxScaler, 10.0),  # Tschannen et al.'s setting
    ("standard", StandardScaler, 0.1),
])
def test_linear_probe_agrees_with_sklearn(mnist5k, scaling, scaler, C):
  train, test = mnist5k
  x_train, x_test = _pooled(train["image"]), _pooled(test["image"])
  acc, params = evaluation.linear_probe(
      x_train, train["label"], x_test, test["label"], C=C, scaling=scaling,
      return_params=True)
  sc = scaler().fit(x_train)
  with threadpool_limits(1):  # 8 agents share 2 cores: avoid oversubscription
    ref = LogisticRegression(C=C, tol=1e-6, max_iter=5000).fit(
        sc.transform(x_train), train["label"])
  ref_acc = ref.score(sc.transform(x_test), test["label"])
  assert abs(acc - ref_acc) <= 0.01, (acc, ref_acc)
  assert acc > 0.8
  assert params["iterations"] < 1000  # converged, not stopped by `steps`
  np.testing.assert_allclose(params["shift"], sc.data_min_ if scaling ==
                             "minmax" else sc.mean_, rtol=1e-5, atol=1e-6)
  logits = ((x_test - params["shift"]) / params["scale"]) @ params["w"]
  agree = np.mean(np.argmax(logits + params["b"], -1) ==
                  ref.predict(sc.transform(x_test)))
  assert agree >= 0.99, agree


def test_linear_probe_regularisation_matters(mnist5k):
  train, test = mnist5k  # same shapes as above: reuses the compiled solver
  args = (_pooled(train["image"]), train["label"], _pooled(test["image"]),
          test["label"])
  _, weak = evaluation.linear_probe(*args, C=1e2, return_params=True)
  _, strong = evaluation.linear_probe(*args, C=1e-3, return_params=True)
  assert np.linalg.norm(strong["w"]) < 0.1 * np.linalg.norm(weak["w"])


def test_mlp_probe_solves_xor_which_no_linear_probe_can():
  rng = np.random.default_rng(0)
  x = rng.uniform(-1, 1, size=(1200, 2)).astype(np.float32)
  y = (np.sign(x[:, 0]) == np.sign(x[:, 1])).astype(np.int32)  # XOR
  mlp = evaluation.mlp_probe(x[:1000], y[:1000], x[1000:], y[1000:],
                             epochs=30, learning_rate=1e-2, seed=0)
  assert mlp > 0.9, mlp  # a linear classifier gets about 0.5 here
  again = evaluation.mlp_probe(x[:1000], y[:1000], x[1000:], y[1000:],
                               epochs=30, learning_rate=1e-2, seed=0)
  assert again == mlp


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_knn_matches_sklearn_and_is_chunk_independent(metric):
  x, y = _blobs(700, 16, 5, seed=1, spread=2.5)
  x_train, y_train, x_test, y_test = x[:500], y[:500], x[500:], y[500:]
  preds = evaluation.knn_predict(x_train, y_train, x_test, k=7, metric=metric,
                                 chunk_size=64)
  chunked = evaluation.knn_predict(x_train, y_train, x_test, k=7,
                                   metric=metric, chunk_size=7)
  np.testing.assert_array_equal(preds, chunked)
  ref = KNeighborsClassifier(
      n_neighbors=7, metric="cosine" if metric == "cosine" else "euclidean",
      algorithm="brute").fit(x_train, y_train)
  assert np.mean(preds == ref.predict(x_test)) >= 0.99
  acc = evaluation.knn_accuracy(x_train, y_train, x_test, y_test, k=7,
                                metric=metric)
  assert acc == pytest.approx(np.mean(preds == y_test))
  assert acc > 0.6


def test_pixel_baseline_uses_the_top_half_only(mnist5k):
  train, test = mnist5k
  args = (train["image"][:1000], train["label"][:1000])
  acc = evaluation.pixel_baseline_accuracy(*args, test["image"][:400],
                                           test["label"][:400], C=0.1)
  scrambled = test["image"][:400].copy()
  scrambled[:, 14:] = np.random.default_rng(0).uniform(
      size=scrambled[:, 14:].shape)
  acc_scrambled = evaluation.pixel_baseline_accuracy(*args, scrambled,
                                                     test["label"][:400], C=0.1)
  assert acc == acc_scrambled
  assert 0.6 < acc < 0.95


@pytest.mark.parametrize("fn", [evaluation.linear_probe, evaluation.mlp_probe,
                                evaluation.knn_accuracy])
def test_bad_inputs_are_clear_errors(fn):
  x, y = _blobs(20, 3, 2, seed=0)
  with pytest.raises(ValueError, match="20 train features but 19"):
    fn(x, y[:19], x, y)
  with pytest.raises(ValueError, match="NaN or inf"):
    fn(np.where(x > 1, np.nan, x), y, x, y)
  with pytest.raises(ValueError, match="single class"):
    fn(x, np.zeros_like(y), x, y)
  with pytest.raises(ValueError, match="dim 3, test features 2"):
    fn(x, y, x[:, :2], y)


def test_unknown_scaling_or_metric_is_an_error():
  x, y = _blobs(20, 3, 2, seed=0)
  with pytest.raises(ValueError, match="scaling must be one of"):
    evaluation.linear_probe(x, y, x, y, scaling="zca")
  with pytest.raises(ValueError, match="metric must be one of"):
    evaluation.knn_accuracy(x, y, x, y, k=3, metric="manhattan")
