"""Variational mutual-information bounds: pure functions of a score matrix.

`fn(scores, mask=None, **options) -> float32 scalar in nats`, with
`scores[i, j] = f(a_i, b_j)` and `mask` marking positive pairs (default: the
diagonal). `mine` also returns its moving-average state. Large-K memory-linear
versions of InfoNCE / DV / NWJ live in `mi_jax.bounds.blocked`.
"""
from mi_jax.bounds import _common
from mi_jax.bounds import blocked
from mi_jax.bounds._dense import dv
from mi_jax.bounds._dense import infonce
from mi_jax.bounds._dense import interpolated
from mi_jax.bounds._dense import jsd
from mi_jax.bounds._dense import mine
from mi_jax.bounds._dense import nwj
from mi_jax.bounds._dense import smile
from mi_jax.bounds._dense import tuba

_BOUNDS = {
    "infonce": infonce,
    "nwj": nwj,
    "tuba": tuba,
    "dv": dv,
    "mine": mine,
    "jsd": jsd,
    "interpolated": interpolated,
    "smile": smile,
}
NAMES = tuple(_BOUNDS)


def get(name):
  """Returns the bound function called `name` (one of `NAMES`)."""
  return _common.lookup(
      _BOUNDS, name, f"Unknown bound {name!r}. Known bounds: "
      f"{', '.join(NAMES)}. Pass one of these names, or call the function "
      "(e.g. mi_jax.bounds.infonce) directly.")


__all__ = ["NAMES", "blocked", "get", *NAMES]
