"""RealNVP: an invertible encoder of coupling layers (Dinh et al. 2017).

Each coupling keeps the first `dim // 2` coordinates `x0` and transforms the
rest `x1` with a network of `x0` only, so it is invertible for any parameters:

  additive (NICE, volume preserving):  y1 = x1 + t(x0)
  affine:                               y1 = x1 * scale(x0) + t(x0), with
    affine_scale="tanh" (default):      scale = exp(tanh(raw_s))  (1/e..e)
    affine_scale="softplus":            scale = softplus(raw_s) + 1e-7

A fixed random permutation (drawn from `seed`) follows each coupling. The
bounded log-scale keeps the inverse stable in float32; the paper's public code
uses scale = softplus(raw) + 1e-7 ("softplus", unbounded above and not the
identity at initialisation: softplus(0) = log 2), offered for reproductions. Used by Tschannen et al. 2020, §3.1a/b (30 additive or affine
couplings, 2x512 ReLU nets, weights ~ truncated N(0, 1e-4^2), zero biases, so
the encoder starts near the identity).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

COUPLINGS = ("additive", "affine")
AFFINE_SCALES = ("tanh", "softplus")
SOFTPLUS_SCALE_EPS = 1e-7  # scale = softplus(raw) + 1e-7 (Tschannen et al.)


class _CouplingNet(nnx.Module):
  """ReLU MLP `x0 -> t(x0)` (additive) or `x0 -> (t, raw_s)` (affine)."""

  def __init__(self, in_dim, hidden, out_dim, *, init_std, init_last_only,
               dtype, param_dtype, rngs):
    dims = (in_dim, *hidden, out_dim)
    small = jax.nn.initializers.truncated_normal(stddev=init_std)
    layers = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
      is_last = i == len(dims) - 2
      kwargs = {}
      if is_last or not init_last_only:
        kwargs = dict(kernel_init=small,
                      bias_init=jax.nn.initializers.zeros)
      layers.append(nnx.Linear(d_in, d_out, dtype=dtype,
                               param_dtype=param_dtype, rngs=rngs, **kwargs))
    self.layers = nnx.List(layers)

  def __call__(self, x0_BxD0):
    h = x0_BxD0
    for layer in self.layers[:-1]:
      h = jax.nn.relu(layer(h))
    return self.layers[-1](h).astype(jnp.float32)


class RealNVP(nnx.Module):
  """Stack of `num_couplings` coupling layers, each followed by a permutation.

  Dinh, Sohl-Dickstein, Bengio, "Density estimation using Real NVP", ICLR
  2017; additive couplings from Dinh, Krueger, Bengio, "NICE", 2015.

  Input `[B, ...]` is flattened to `[B, dim]`; output `z_BxD` has the same
  dimension. `inverse(z)` returns the flat `x_BxD`. `forward_and_log_det`
  also returns `log|det dz/dx|` per example (0 for additive couplings).
  The coupling and permutation arithmetic runs in float32; `dtype` only sets
  the compute dtype of the coupling networks.

  Args:
    dim: number of input (= output) dimensions.
    num_couplings: number of coupling layers.
    hidden: hidden widths of each coupling network (ReLU).
    coupling: "additive" or "affine".
    init_std: std of the truncated-normal weight init (biases zero).
    init_last_only: if False (default, as the paper's code) every layer of a
      coupling net uses `init_std`; if True only the last one does and the
      others use the default LeCun init. Either way the encoder starts near
      the identity map.
    affine_scale: how an affine coupling maps its raw output to the scale:
      "tanh" (default), scale = exp(tanh(raw)), bounded in (1/e, e); or
      "softplus", scale = softplus(raw) + 1e-7 (Tschannen et al.'s notebook).
      Ignored by additive couplings.
    seed: seed of the fixed random permutations (NumPy), not a JAX key.
  """

  def __init__(
      self,
      dim: int,
      num_couplings: int = 30,
      hidden: Sequence[int] = (512, 512),
      coupling: str = "additive",
      init_std: float = 1e-4,
      *,
      init_last_only: bool = False,
      affine_scale: str = "tanh",
      seed: int = 0,
      dtype=None,
      param_dtype=jnp.float32,
      rngs: nnx.Rngs,
  ):
    if coupling not in COUPLINGS:
      raise ValueError(
          f"Unknown coupling {coupling!r}; known: {list(COUPLINGS)}")
    if affine_scale not in AFFINE_SCALES:
      raise ValueError(f"Unknown affine_scale {affine_scale!r}; known: "
                       f"{list(AFFINE_SCALES)}")
    if dim < 2:
      raise ValueError(f"RealNVP needs dim >= 2, got {dim}.")
    self.dim = dim
    self.out_dim = dim
    self.num_masked = dim // 2
    self.coupling = coupling
    self.affine_scale = affine_scale
    out_dim = dim - self.num_masked
    if coupling == "affine":
      out_dim *= 2
    self.nets = nnx.List([
        _CouplingNet(self.num_masked, tuple(hidden), out_dim,
                     init_std=init_std, init_last_only=init_last_only,
                     dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for _ in range(num_couplings)
    ])
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(dim) for _ in range(num_couplings)]
    # Static (hashable) constants: part of the graph, not of the state.
    self.permutations = tuple(tuple(int(i) for i in p) for p in perms)
    self.inverse_permutations = tuple(
        tuple(int(i) for i in np.argsort(p)) for p in perms)

  def _flat(self, x):
    x_BxD = x.reshape(x.shape[0], -1).astype(jnp.float32)
    if x_BxD.shape[-1] != self.dim:
      raise ValueError(
          f"RealNVP expects {self.dim} features per example, got input of "
          f"shape {tuple(x.shape)}.")
    return x_BxD

  def _shift_scale(self, net, x0_BxD0):
    """(shift, scale, log_scale); scale and log_scale are None if additive."""
    out = net(x0_BxD0)
    if self.coupling == "additive":
      return out, None, None
    shift, raw_scale = jnp.split(out, 2, axis=-1)
    if self.affine_scale == "softplus":
      scale = jax.nn.softplus(raw_scale) + SOFTPLUS_SCALE_EPS
      return shift, scale, jnp.log(scale)
    log_scale = jnp.tanh(raw_scale)
    return shift, jnp.exp(log_scale), log_scale

  def forward_and_log_det(self, x: jax.Array):
    """Returns `(z_BxD, log_det_B)` with `log_det = log|det dz/dx|`."""
    z_BxD = self._flat(x)
    log_det_B = jnp.zeros(z_BxD.shape[:1], jnp.float32)
    k = self.num_masked
    for net, perm in zip(self.nets, self.permutations):
      x0, x1 = z_BxD[:, :k], z_BxD[:, k:]
      shift, scale, log_scale = self._shift_scale(net, x0)
      if scale is not None:
        x1 = x1 * scale
        log_det_B = log_det_B + jnp.sum(log_scale, axis=-1)
      z_BxD = jnp.concatenate([x0, x1 + shift], axis=-1)
      z_BxD = z_BxD[:, np.asarray(perm)]
    return z_BxD, log_det_B

  def __call__(self, x: jax.Array) -> jax.Array:
    """Forward map `x [B, ...] -> z_BxD`."""
    return self.forward_and_log_det(x)[0]

  def inverse(self, z: jax.Array) -> jax.Array:
    """Inverse map `z_BxD -> x_BxD` (exact up to float rounding)."""
    x_BxD = self._flat(z)
    k = self.num_masked
    for net, inv_perm in zip(reversed(self.nets),
                             reversed(self.inverse_permutations)):
      x_BxD = x_BxD[:, np.asarray(inv_perm)]
      y0, y1 = x_BxD[:, :k], x_BxD[:, k:]
      shift, scale, _ = self._shift_scale(net, y0)
      x1 = y1 - shift
      if scale is not None:
        x1 = x1 / scale
      x_BxD = jnp.concatenate([y0, x1], axis=-1)
    return x_BxD
