"""Gradients of the §3.2 matmul chain for N seeds: batched vs unrolled in one program vs N calls.

The chain 392-300-300-100 (tanh) at batch 128 with per-seed weights; times
(median of 7 rounds of 2 calls) of the weight gradients computed
  batched      `jit(grad(vmap(chain)))`: batched dot_generals
  loop-in-jit  the N single-seed chains unrolled in one jitted program
  N calls      N calls of the jitted single-seed gradient
and how many dots XLA:CPU left to its generic emitter vs YNNPACK fusions.
Run twice to compare XLA:CPU's dot libraries:
  python experiments/benchmarks/seeds_matmul_grads.py
  XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= python experiments/benchmarks/seeds_matmul_grads.py
"""
import os, time, statistics
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import jax, jax.numpy as jnp
n=20
dims=[(392,300),(300,300),(300,100)]
ws=[jax.random.normal(jax.random.key(i),(n,)+d)*0.05 for i,d in enumerate(dims)]
x=jax.random.normal(jax.random.key(9),(n,128,392))
def chain(x,ws):
  h=x
  for w in ws: h=jnp.tanh(h@w)
  return jnp.sum(h)
gb=jax.jit(jax.grad(lambda x,ws: jax.vmap(chain)(x,ws).sum(), argnums=1))
gl=jax.jit(jax.grad(lambda x,ws: sum(chain(x[i],[w[i] for w in ws]) for i in range(n)), argnums=1))
g1=jax.jit(jax.grad(chain, argnums=1))
xs=[x[i] for i in range(n)]; wss=[[w[i] for w in ws] for i in range(n)]
def tb(): jax.block_until_ready(gb(x,ws))
def tl(): jax.block_until_ready(gl(x,ws))
def ts(): jax.block_until_ready([g1(xs[i],wss[i]) for i in range(n)])
for f in (tb,tl,ts): f()
T={k:[] for k in "bls"}
for r in range(7):
  for k,f in zip("bls",(tb,tl,ts)):
    t0=time.perf_counter(); f(); f(); T[k].append(time.perf_counter()-t0)
m={k:statistics.median(v) for k,v in T.items()}
print(os.environ.get("XLA_FLAGS",""), "median s: batched %.3f  loop-in-jit %.3f  20 calls %.3f; batched/20calls speed %.2fx" % (m["b"],m["l"],m["s"], statistics.median(s/b for s,b in zip(T["s"],T["b"]))))
t=gb.lower(x,ws).compile().as_text()
print("dots not in ynn:", sum(1 for l in t.split("\n") if " dot(" in l), "ynn fusions:", t.count('"kind":"__ynn_fusion"'))
