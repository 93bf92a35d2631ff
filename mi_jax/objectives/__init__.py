"""Objectives: a model plus `loss_fn(model, batch, key) -> (loss, metrics)` per method."""

from mi_jax.objectives.dim import DIMModel, dim_loss, make_dim_loss, make_dim_model
from mi_jax.objectives.multiview import (
    MultiviewModel, make_multiview_loss, multiview_loss)
