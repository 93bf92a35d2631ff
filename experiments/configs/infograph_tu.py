"""InfoGraph on a TU graph-classification set (Sun et al., ICLR 2020).

GIN encoder (5 layers, hidden 32, batch norm, sum aggregation, eps = 0),
graph embedding = concatenation over layers of sum-pooled node features,
local / global MLP heads, local-global JSD (positives: a node's own graph;
negatives: every other graph of the batch), batch 128, 20 epochs, Adam 1e-3.
Node features: one-hot node tags (a constant for IMDB). Evaluation: an SVM
(scikit-learn's SVC, RBF as the reference's SVC()) on each of the 10
provided folds with C from {1e-3..1e3} chosen by 5-fold CV on the training
fold, gamma = 1 / D (the reference's SVC() default in 2019); the epoch (20)
is fixed in advance. Baselines: a tag + degree
histogram through the same SVM, the WL subtree kernel (h = 3) and a
random-init encoder.

  mi-jax train --config experiments/configs/infograph_tu.py:MUTAG --workdir /tmp/mi_jax/infograph_MUTAG

for MUTAG, PTC, PROTEINS, IMDBBINARY, IMDBMULTI, NCI1 (`infograph_mutag.py`
is the MUTAG one). Mean +- std over folds and 5 training seeds (vmapped):

  python -m experiments.graphs.seeds --config experiments/configs/infograph_tu.py:PTC --seeds 5
"""
import ml_collections

GRAPHS = {"MUTAG": 188, "PTC": 344, "PROTEINS": 1113, "IMDBBINARY": 1000,
          "IMDBMULTI": 1500, "NCI1": 4110}


def get_config(dataset: str = "MUTAG") -> ml_collections.ConfigDict:
  if dataset not in GRAPHS:
    raise ValueError(f"unknown TU set {dataset!r}; use one of {sorted(GRAPHS)}")
  c = ml_collections.ConfigDict()
  c.method = "infograph"
  c.datasets_dir = ""   # "" -> $MI_JAX_DATASETS_DIR or ../shared/data
  c.infograph = ml_collections.ConfigDict(dict(
      dataset=dataset, hidden=32, num_layers=5, epochs=20, wl_iterations=3,
      svm_kernel="rbf",
      # The reference shuffles the set once and then feeds the same batches
      # in the same order every epoch (a DataLoader without shuffle).
      reshuffle=False))
  c.batch_size = 128
  c.lr = 1e-3
  # 20 epochs of ceil(N / 128) batches (the last, smaller one kept).
  c.steps = 20 * -(-GRAPHS[dataset] // c.batch_size)
  c.seed = 0
  c.use_mesh = True
  c.log_every = 10
  c.eval_every = c.steps
  c.probe_every = c.steps
  c.checkpoint_every = c.steps
  c.keep_checkpoints = 1
  # SVM per fold: C from this grid by `inner_folds`-fold CV on the train fold.
  # gamma "auto" = 1 / D: the default of the reference's SVC() under the
  # scikit-learn of its 2019 experiments (<= 0.21; "scale" since 0.22).
  c.svm = ml_collections.ConfigDict(dict(
      random_baseline=True, wl_baseline=True, inner_folds=5, gamma="auto",
      Cs=(1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)))
  c.progress_bar = False
  return c
