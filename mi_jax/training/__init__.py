"""Training: TrainState, the pure train step, vmap over seeds, mesh sharding.

The loop, checkpoints, metrics and CLI live in sibling modules
(`loop`, `checkpoint`, `metrics`, `cli`); sharding helpers in `sharding`,
multi-host start-up in `distributed`.
"""

from mi_jax.training.state import (
    TrainState, init_train_state, init_train_states, merge_model, split_model,
    stack_states, unstack_state)
from mi_jax.training.step import (
    make_eval_step, make_multi_step, make_train_step, vmap_over_seeds)
