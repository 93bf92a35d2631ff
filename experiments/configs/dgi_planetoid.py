"""Deep Graph Infomax on a Planetoid citation graph (Velickovic et al., ICLR 2019).

One-layer GCN (512 units, PReLU) on the whole graph, readout sigmoid(mean),
bilinear discriminator, JSD / BCE objective, corruption = row-shuffled
features, Adam 1e-3, features row-normalised as in the reference code (and
in Kipf & Welling's GCN preprocessing that DGI follows). The engine trains one
seed for `steps` full-graph steps and prints the node-classification test
accuracy beside raw features and a random-init encoder:

  mi-jax train --config experiments/configs/dgi_planetoid.py:cora --workdir /tmp/mi_jax/dgi_cora
  mi-jax train --config experiments/configs/dgi_planetoid.py:citeseer --workdir /tmp/mi_jax/dgi_citeseer

(`dgi_cora.py` / `dgi_citeseer.py` are the same configs). The paper's
protocol (early stopping on the training loss with patience 20, mean +- std
over 10 training seeds, vmapped) is the seed sweep:

  python -m experiments.graphs.seeds --config experiments/configs/dgi_cora.py --seeds 10

`steps` is fixed in advance for the single-seed engine run (the engine has
no early stopping): Cora 300, where a development run of seed 0 stopped
(epoch 301, lowest loss at 280); CiteSeer 150, inside the range where the
10-seed early-stopped sweep stopped (131-245 epochs; Cora's: 127-318; see
docs/graphs.md).
"""
import ml_collections

STEPS = {"cora": 300, "citeseer": 150}


def get_config(dataset: str = "cora") -> ml_collections.ConfigDict:
  if dataset not in STEPS:
    raise ValueError(f"unknown Planetoid set {dataset!r}; use one of "
                     f"{sorted(STEPS)}")
  c = ml_collections.ConfigDict()
  c.method = "dgi"
  c.datasets_dir = ""   # "" -> $MI_JAX_DATASETS_DIR or ../shared/data
  c.dgi = ml_collections.ConfigDict(dict(
      dataset=dataset, hidden=512, row_normalize=True, patience=20,
      max_epochs=2000))
  c.batch_size = 1          # one whole graph per step
  c.lr = 1e-3
  c.steps = STEPS[dataset]
  c.seed = 0
  c.use_mesh = False
  c.log_every = 25
  c.eval_every = STEPS[dataset]
  c.probe_every = STEPS[dataset]
  c.checkpoint_every = 100
  c.keep_checkpoints = 2
  # Node classification: C picked on the validation nodes from this grid.
  c.nodes = ml_collections.ConfigDict(dict(
      random_baseline=True, Cs=(0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)))
  c.progress_bar = False
  return c
