"""Critics: Flax NNX modules mapping two embedding batches to a score matrix.

`critic(za_BxDa, zb_CxDb) -> scores_BxC` (float32), `scores[i, j] = f(a_i, b_j)`,
the input of every bound in `mi_jax.bounds`. Families (Poole et al. 2019;
Tschannen et al. 2020): bilinear a^T W b, separable g(a)^T h(b), inner product
(optionally cosine / temperature), a concat MLP f([a; b]) evaluated on all
B x C pairs at once, and a low-rank quadratic form (the log density ratio of
a Gaussian pair).

All but the concat MLP are factorised: `critic.factors(za, zb) -> (ua_BxK, ub_CxK)`
with `scores = ua @ ub.T`, which the memory-linear bounds in
`mi_jax.bounds.blocked` take instead of the [B, C] matrix. The concat MLP has
no such factorisation (`factors` raises).
"""
from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

NAMES = ("bilinear", "separable", "inner_product", "concat", "quadratic")
_ALIASES = {"concat_mlp": "concat", "mlp": "concat", "innerproduct": "inner_product"}


def _activation(act) -> Callable:
  if callable(act):
    return act
  fn = getattr(jax.nn, str(act), None)
  if fn is None or not callable(fn):
    raise ValueError(f"Unknown activation {act!r}; use a jax.nn name such as "
                     "'relu', 'elu', 'tanh' or pass a callable.")
  return fn


def _hidden(hidden, layers) -> tuple[int, ...]:
  if isinstance(hidden, int):
    return (hidden,) * layers
  return tuple(int(h) for h in hidden)


def _check_inputs(name, za, zb, dim_a, dim_b):
  if za.ndim != 2 or zb.ndim != 2:
    raise ValueError(f"{name} expects 2-D inputs [B, D], got shapes "
                     f"{za.shape} and {zb.shape}.")
  if dim_a is not None and (za.shape[1], zb.shape[1]) != (dim_a, dim_b):
    raise ValueError(f"{name} was built for widths ({dim_a}, {dim_b}), got "
                     f"inputs of widths ({za.shape[1]}, {zb.shape[1]}).")


class _MLP(nnx.Module):
  """Linear -> act -> ... -> Linear (no activation after the last layer)."""

  def __init__(self, dims: Sequence[int], activation, *, rngs: nnx.Rngs):
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs)
                            for a, b in zip(dims[:-1], dims[1:])])
    self.activation = _activation(activation)

  def __call__(self, x):
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < len(self.layers) - 1:
        x = self.activation(x)
    return x


class Bilinear(nnx.Module):
  """Bilinear critic f(a, b) = a^T W b (Oord et al. 2018; Tschannen et al. 2020).

  scores_BxC = za_BxDa @ W_DaxDb @ zb_CxDb^T. With `init="normal"` (default)
  W starts as N(0, 1/(Da Db)), so unit-variance inputs give unit-variance
  scores. `init="glorot_uniform"` draws W ~ U(-l, l), l = sqrt(6 / (Da + Db)),
  as a Keras `Dense(Db, use_bias=False)` kernel (the critic of Tschannen et
  al.'s notebook): std sqrt(2 / (Da + Db)), 10x the default at 100x100 and
  20x at 392x392. `kernel_init` (an initializer) overrides `init`.
  """

  INITS = ("normal", "glorot_uniform")

  def __init__(self, dim_a: int, dim_b: int, *, rngs: nnx.Rngs,
               kernel_init=None, init: str = "normal"):
    if init not in self.INITS:
      raise ValueError(f"Unknown bilinear init {init!r}; known: "
                       f"{list(self.INITS)}.")
    self.dim_a, self.dim_b = dim_a, dim_b
    if kernel_init is None and init == "glorot_uniform":
      kernel_init = nnx.initializers.glorot_uniform()
    init = kernel_init or nnx.initializers.normal((dim_a * dim_b) ** -0.5)
    self.kernel = nnx.Param(init(rngs.params(), (dim_a, dim_b), jnp.float32))

  def factors(self, za_BxD, zb_CxD):
    """(za, zb W^T): scores = za @ (zb W^T)^T."""
    _check_inputs("Bilinear", za_BxD, zb_CxD, self.dim_a, self.dim_b)
    return za_BxD, zb_CxD @ self.kernel[...].T

  def __call__(self, za_BxD, zb_CxD):
    ua_BxDa, wb_CxDa = self.factors(za_BxD, zb_CxD)
    return (ua_BxDa @ wb_CxDa.T).astype(jnp.float32)


class Separable(nnx.Module):
  """Separable critic f(a, b) = g(a)^T h(b) (Poole et al. 2019).

  g and h are MLPs Da -> hidden... -> out_dim and Db -> hidden... -> out_dim;
  scores_BxC = g(za) @ h(zb)^T. `hidden` is an int (repeated `layers` times)
  or a tuple of widths.
  """

  def __init__(self, dim_a: int, dim_b: int, *, hidden=100, out_dim: int = 100,
               layers: int = 1, activation="relu", rngs: nnx.Rngs):
    self.dim_a, self.dim_b = dim_a, dim_b
    widths = _hidden(hidden, layers)
    self.g = _MLP((dim_a, *widths, out_dim), activation, rngs=rngs)
    self.h = _MLP((dim_b, *widths, out_dim), activation, rngs=rngs)

  def factors(self, za_BxD, zb_CxD):
    """(g(za), h(zb))."""
    _check_inputs("Separable", za_BxD, zb_CxD, self.dim_a, self.dim_b)
    return self.g(za_BxD), self.h(zb_CxD)

  def __call__(self, za_BxD, zb_CxD):
    ga_BxK, hb_CxK = self.factors(za_BxD, zb_CxD)
    return (ga_BxK @ hb_CxK.T).astype(jnp.float32)


class InnerProduct(nnx.Module):
  """Inner-product critic f(a, b) = a . b / temperature (no parameters).

  cosine=True uses a/|a| . b/|b| (as in SimCLR / CMC; Chen et al. 2020).
  """

  def __init__(self, cosine: bool = False, temperature: float = 1.0):
    if temperature <= 0:
      raise ValueError(f"temperature must be positive, got {temperature}.")
    self.cosine, self.temperature = cosine, temperature

  def factors(self, za_BxD, zb_CxD):
    """(za / temperature, zb), each first normalised when cosine (float32)."""
    _check_inputs("InnerProduct", za_BxD, zb_CxD, None, None)
    if za_BxD.shape[1] != zb_CxD.shape[1]:
      raise ValueError(f"InnerProduct needs equal widths, got "
                       f"{za_BxD.shape[1]} and {zb_CxD.shape[1]}.")
    za, zb = za_BxD.astype(jnp.float32), zb_CxD.astype(jnp.float32)
    if self.cosine:
      eps = 1e-12
      za = za * jax.lax.rsqrt(jnp.maximum(jnp.sum(za**2, -1, keepdims=True), eps))
      zb = zb * jax.lax.rsqrt(jnp.maximum(jnp.sum(zb**2, -1, keepdims=True), eps))
    return za / self.temperature, zb

  def __call__(self, za_BxD, zb_CxD):
    ua_BxD, ub_CxD = self.factors(za_BxD, zb_CxD)
    return ua_BxD @ ub_CxD.T


class ConcatMLP(nnx.Module):
  """Concat critic f(a, b) = MLP([a; b]) on every pair (Belghazi et al. 2018).

  Vectorised without forming the [B, C, Da + Db] concatenation: the first
  layer splits its kernel, h_ij = a_i W_a + b_j W_b + bias, broadcast to
  [B, C, H]; the remaining layers act on the last axis; output [B, C].
  """

  def __init__(self, dim_a: int, dim_b: int, *, hidden=(200,), layers: int = 1,
               activation="relu", rngs: nnx.Rngs):
    self.dim_a, self.dim_b = dim_a, dim_b
    widths = _hidden(hidden, layers)
    self.mlp = _MLP((dim_a + dim_b, *widths, 1), activation, rngs=rngs)

  def factors(self, za_BxD, zb_CxD):
    """Not factorisable: raises (the memory-linear bounds need ua @ ub.T)."""
    raise ValueError(
        "the concat critic scores every pair with an MLP and has no "
        "factorisation scores = ua @ ub.T, so it cannot use the blocked "
        "(memory-linear) bounds; use bilinear, separable or inner_product, "
        "or the dense bounds.")

  def _split_first_layer(self, za_BxD, zb_CxD):
    """First layer on each side: (a_i W_a [B, H], b_j W_b + bias [C, H])."""
    _check_inputs("ConcatMLP", za_BxD, zb_CxD, self.dim_a, self.dim_b)
    first = self.mlp.layers[0]
    kernel = first.kernel[...]
    return (za_BxD @ kernel[:self.dim_a],
            zb_CxD @ kernel[self.dim_a:] + first.bias[...])

  def _head(self, h_BxCxH):
    for layer in self.mlp.layers[1:]:
      h_BxCxH = layer(self.mlp.activation(h_BxCxH))
    return h_BxCxH[..., 0].astype(jnp.float32)

  def __call__(self, za_BxD, zb_CxD):
    ha_BxH, hb_CxH = self._split_first_layer(za_BxD, zb_CxD)
    return self._head(ha_BxH[:, None, :] + hb_CxH[None, :, :])

  def pair_scores(self, za_BxD, zb_CxD, cols_BxM):
    """Scores of chosen pairs only: out[i, m] = f(a_i, b_{cols[i, m]}), [B, M].

    Costs B * M MLP evaluations instead of B * C: a concat critic trained on
    a few negatives per row (`mi_jax.estimate(..., negatives=M - 1)`).
    """
    ha_BxH, hb_CxH = self._split_first_layer(za_BxD, zb_CxD)
    return self._head(ha_BxH[:, None, :] + hb_CxH[cols_BxM])


class Quadratic(nnx.Module):
  """Low-rank quadratic critic (a Gaussian log density ratio, exactly).

  u = a P, v = b Q (projections to `rank` dims), and

    f(a, b) = sum_k w_k u_k v_k + d_k u_k^2 + c_k v_k^2 + e_k u_k + g_k v_k.

  For jointly Gaussian (a, b) the log density ratio log p(a, b) / p(a) p(b)
  is, up to a constant, of this form with P, Q the canonical (CCA)
  directions and rank = the number of non-zero canonical correlations
  (Hotelling 1936): in canonical coordinates it is
  sum_k [rho_k u_k v_k - rho_k^2 (u_k^2 + v_k^2) / 2] / (1 - rho_k^2).
  After a per-coordinate Gaussianization this covers every Gaussian-copula
  dependence, with rank (Da + Db + 5) parameters. Factorised (`factors`):
  ua = [u w, sum_k d_k u_k^2 + e_k u_k, 1], ub = [v, 1, sum_k c_k v_k^2 +
  g_k v_k]. P and Q start as N(0, 1/D), the coefficients w, c, d, e, g at 0.
  """

  def __init__(self, dim_a: int, dim_b: int, *, rank: int | None = None,
               rngs: nnx.Rngs):
    self.dim_a, self.dim_b = dim_a, dim_b
    r = min(dim_a, dim_b) if rank is None else int(rank)
    if r < 1:
      raise ValueError(f"rank must be >= 1; got {rank!r}.")
    self.rank = r
    self.proj_a = nnx.Param(nnx.initializers.normal(dim_a ** -0.5)(
        rngs.params(), (dim_a, r), jnp.float32))
    self.proj_b = nnx.Param(nnx.initializers.normal(dim_b ** -0.5)(
        rngs.params(), (dim_b, r), jnp.float32))
    # Rows: cross w, squares of a (d) and b (c), linear in a (e) and b (g).
    self.coef = nnx.Param(jnp.zeros((5, r), jnp.float32))

  def factors(self, za_BxD, zb_CxD):
    """(ua [B, r + 2], ub [C, r + 2]) with scores = ua @ ub.T."""
    _check_inputs("Quadratic", za_BxD, zb_CxD, self.dim_a, self.dim_b)
    w, d, c, e, g = self.coef[...]
    u_BxR = za_BxD.astype(jnp.float32) @ self.proj_a[...]
    v_CxR = zb_CxD.astype(jnp.float32) @ self.proj_b[...]
    qa_B = (u_BxR * u_BxR) @ d + u_BxR @ e
    qb_C = (v_CxR * v_CxR) @ c + v_CxR @ g
    ones = lambda n: jnp.ones((n, 1), jnp.float32)
    ua = jnp.concatenate([u_BxR * w, qa_B[:, None], ones(len(qa_B))], -1)
    ub = jnp.concatenate([v_CxR, ones(len(qb_C)), qb_C[:, None]], -1)
    return ua, ub

  def __call__(self, za_BxD, zb_CxD):
    ua_BxK, ub_CxK = self.factors(za_BxD, zb_CxD)
    return (ua_BxK @ ub_CxK.T).astype(jnp.float32)


def make(name: str, dim_a: int, dim_b: int, *, rngs: nnx.Rngs, **kwargs):
  """Builds a critic by name: "bilinear", "separable", "inner_product", "concat",
  "quadratic".

  ("concat_mlp" is accepted for "concat"; `out` for `out_dim` and
  `hidden_dims` for `hidden`.) Keyword arguments go to the constructor.
  """
  key = _ALIASES.get(str(name).lower(), str(name).lower())
  if "out" in kwargs:
    kwargs["out_dim"] = kwargs.pop("out")
  if "hidden_dims" in kwargs:
    kwargs["hidden"] = kwargs.pop("hidden_dims")
  if key == "bilinear":
    return Bilinear(dim_a, dim_b, rngs=rngs, **kwargs)
  if key == "separable":
    return Separable(dim_a, dim_b, rngs=rngs, **kwargs)
  if key == "inner_product":
    if dim_a != dim_b:
      raise ValueError(f"inner_product needs dim_a == dim_b, got {dim_a} and "
                       f"{dim_b}; use 'bilinear' for different widths.")
    return InnerProduct(**kwargs)
  if key == "concat":
    return ConcatMLP(dim_a, dim_b, rngs=rngs, **kwargs)
  if key == "quadratic":
    return Quadratic(dim_a, dim_b, rngs=rngs, **kwargs)
  raise ValueError(f"Unknown critic {name!r}. Known critics: "
                   f"{', '.join(NAMES)}. Pass one of these names to "
                   "mi_jax.critics.make or build the class directly.")
