"""Evaluation of frozen representations: linear / MLP probes, kNN, baseline.

Public names:
  linear_probe(train_feats, train_labels, test_feats, test_labels, ...)
    -> accuracy (multinomial logistic regression, L-BFGS, sklearn's C)
  mlp_probe(...) -> accuracy (200 hidden units, dropout 0.5, Adam; DIM)
  knn_accuracy(...), knn_predict(...) (cosine or L2, chunked)
  pixel_baseline_accuracy(train_x, train_y, test_x, test_y, noise_std=0.05)
  noisy_half_pixels(train_x, test_x) -> that baseline's features
  python -m mi_jax.evaluation: the raw-pixel table on mnist5k
  node_classification(...): transductive logistic regression, C on val
  svm_kfold(...): SVM over given folds, C by inner CV (graph classification)
  wl_features / wl_kernel: Weisfeiler-Lehman subtree baseline
  dim_suite: DIM's suite (reference MLP probe, I(X;Y), NDM, prior statistics)
"""
from mi_jax.evaluation.knn import knn_accuracy
from mi_jax.evaluation.knn import knn_predict
from mi_jax.evaluation.probe import linear_probe
from mi_jax.evaluation.probe import mlp_probe
from mi_jax.evaluation.probe import noisy_half_pixels
from mi_jax.evaluation.probe import pixel_baseline_accuracy
from mi_jax.evaluation.graph_kernels import wl_features
from mi_jax.evaluation.graph_kernels import wl_kernel
from mi_jax.evaluation.node_classification import node_classification
from mi_jax.evaluation.svm import svm_kfold
from mi_jax.evaluation import dim_suite
from mi_jax.evaluation.dim_suite import reference_mlp_probe
