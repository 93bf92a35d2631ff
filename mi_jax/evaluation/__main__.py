"""Raw-pixel baselines of the probes on a data set, beside scikit-learn's.

  python -m mi_jax.evaluation [--data mnist5k] [--data_dir DIR] [--C 10]

Prints the test accuracy of `pixel_baseline_accuracy` (Tschannen et al.'s
half-pixels + noise baseline, noise_std 0.05, seed 0), `linear_probe`,
`mlp_probe` and `knn_accuracy` on raw pixels, and, when scikit-learn is
installed, `LogisticRegression` with the same C and scaling on the same
features.
"""
import argparse
import time


from mi_jax import data
from mi_jax import evaluation


def _timed(fn, *args, **kwargs):
  start = time.perf_counter()
  out = fn(*args, **kwargs)
  return out, time.perf_counter() - start


def _sklearn_linear(x_train, y_train, x_test, y_test, C):
  """scikit-learn's LogisticRegression on min-max scaled features, or None."""
  try:
    from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
    from sklearn.preprocessing import MinMaxScaler  # pylint: disable=g-import-not-at-top
    from threadpoolctl import threadpool_limits  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  scaler = MinMaxScaler().fit(x_train)
  with threadpool_limits(1):
    model = LogisticRegression(C=C, tol=1e-6, max_iter=5000).fit(
        scaler.transform(x_train), y_train)
  return model.score(scaler.transform(x_test), y_test)


def main(argv=None):
  """Prints the baseline table."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data", default="mnist5k")
  parser.add_argument("--data_dir", default=None)
  parser.add_argument("--C", type=float, default=10.0)
  args = parser.parse_args(argv)
  train = data.load_arrays(args.data, "train", data_dir=args.data_dir)
  test = data.load_arrays(args.data, "test", data_dir=args.data_dir)
  x_train = train["image"].reshape(len(train["image"]), -1)
  x_test = test["image"].reshape(len(test["image"]), -1)
  xy = (x_train, train["label"], x_test, test["label"])
  half_train, half_test = evaluation.noisy_half_pixels(train["image"],
                                                       test["image"])
  half = (half_train, train["label"], half_test, test["label"])
  rows = [
      ("pixel baseline (half + noise 0.05, minmax, C)",
       _timed(evaluation.pixel_baseline_accuracy, train["image"],
              train["label"], test["image"], test["label"], C=args.C)),
      ("sklearn LogisticRegression, same features",
       _timed(_sklearn_linear, *half, args.C)),
      ("linear probe, all pixels (minmax, C)",
       _timed(evaluation.linear_probe, *xy, C=args.C)),
      ("sklearn LogisticRegression, all pixels (minmax, C)",
       _timed(_sklearn_linear, *xy, args.C)),
      ("MLP probe, all pixels (200 hidden, dropout 0.5)",
       _timed(evaluation.mlp_probe, *xy)),
      ("kNN k=20 cosine, all pixels", _timed(evaluation.knn_accuracy, *xy)),
  ]
  print(f"{args.data}: {len(x_train)} train / {len(x_test)} test, C={args.C}")
  for name, (acc, seconds) in rows:
    shown = "n/a (no sklearn)" if acc is None else f"{acc:.4f}"
    print(f"  {name:52s} {shown:>10s}  ({seconds:.1f} s)")


if __name__ == "__main__":
  main()
