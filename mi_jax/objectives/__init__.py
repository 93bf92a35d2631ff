"""Objectives (methods): a model plus `loss_fn(model, batch, key) -> (loss, metrics)` per method.

Each method module also has `build(config, *, seed) -> Method`, the plug-in
the training engine calls (`config.method = "multiview" | "dim" | a module
path | a .py file`); see `mi_jax.objectives._method` and docs/architecture.md.
"""

from mi_jax.objectives._images import (
    image_splits, load_split, probe_evaluation, split_batches)
from mi_jax.objectives._method import (
    Evaluation, FixedBatchIterator, Method, config_kwargs)
from mi_jax.objectives.dgi import DGIModel, corrupt, dgi_loss
from mi_jax.objectives.dim import DIMModel, dim_loss, make_dim_loss, make_dim_model
from mi_jax.objectives.multiview import (
    MultiviewModel, make_multiview_loss, multiview_loss)
from mi_jax.objectives.infograph import (
    InfoGraphModel, infograph_loss, infograph_mask)
from mi_jax.objectives.cmc import CMCModel, MemoryBank, cmc_loss, make_cmc_loss
from mi_jax.objectives.cpc import CPCModel, cpc_loss, make_cpc_loss
