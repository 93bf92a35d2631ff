"""Training: TrainState, the pure train step, vmap over seeds, mesh sharding, the engine.

The engine runs any method (`mi_jax.objectives.Method`, named by
`config.method`): `run` builds it and compiles the steps, `evaluate` holds the
held-out bound and the method's evaluations, `loop` trains / resumes /
evaluates a workdir; checkpoints, metrics and the CLI live in sibling
modules, sharding helpers in `sharding`, multi-host start-up in `distributed`.
"""

from mi_jax.training.evaluate import apply_in_chunks, heldout_mean
from mi_jax.training.state import (
    TrainState, init_train_state, init_train_states, merge_model, split_model,
    unstack_state)
from mi_jax.training.step import (
    global_norm, make_eval_step, make_multi_step, make_train_step, map_over_seeds,
    vmap_over_seeds, with_batch_sampler)
