"""Graph loaders reproduce ../shared/data/README.md; padded batches; iterator state."""
import os

import numpy as np
import pytest

from mi_jax.data import graphs, shared

import tiny_graphs

# ../shared/data/README.md section 3 ("Measured").
TU_README = {
    "MUTAG": (188, {0: 63, 2: 125}, 17.93, 28, 19.79, 7, 18),
    "PTC": (344, {0: 192, 1: 152}, 25.56, 109, 25.96, 19, 34),
    "PROTEINS": (1113, {0: 663, 1: 450}, 39.06, 620, 72.82, 3, 111),
    "IMDBBINARY": (1000, {0: 500, 1: 500}, 19.77, 136, 96.53, 1, 100),
    "IMDBMULTI": (1500, {0: 500, 1: 500, 2: 500}, 13.00, 89, 65.94, 1, 150),
    "NCI1": (4110, {0: 2053, 1: 2057}, 29.87, 111, 32.30, 37, 411),
}
KEYS = ("graphs", "class_counts", "avg_nodes", "max_nodes", "avg_edges",
        "node_tags", "test_fold_size")


@pytest.mark.parametrize("name", sorted(TU_README))
def test_tu_counts_match_readme(name):
  if not shared.available(f"tu/{name}/{name}.txt"):
    pytest.skip("../shared/data/tu not available")
  ds = graphs.load_tu(name)
  assert graphs.describe(ds) == dict(zip(KEYS, TU_README[name]))
  assert len(ds.folds) == 10
  for train, test in ds.folds:
    assert not set(train) & set(test)
    assert len(set(train) | set(test)) == ds.num_graphs
  for e in ds.edges[:50]:   # symmetric, no self loops
    pairs = set(map(tuple, e.tolist()))
    assert pairs == {(j, i) for i, j in pairs} and all(i != j for i, j in pairs)


@pytest.mark.parametrize("name,n,f,e,k,train,nnz", [
    ("cora", 2708, 1433, 5278, 7, 140, 49216),
    ("citeseer", 3327, 3703, 4552, 6, 120, 105165)])
def test_planetoid_counts_match_readme(name, n, f, e, k, train, nnz):
  if not shared.available(f"planetoid/{name}.npz"):
    pytest.skip("../shared/data/planetoid not available")
  d = graphs.load_planetoid(name)
  assert d["features"].shape == (n, f) and len(d["edges"]) == e
  assert int((d["features"] != 0).sum()) == nnz
  assert d["labels"].max() + 1 == k
  assert (len(d["train_idx"]), len(d["val_idx"]), len(d["test_idx"])) == (
      train, 500, 1000)
  b = graphs.planetoid_batch(d, multiple=8)
  assert int(b["edge_mask"].sum()) == 2 * e and int(b["node_mask"].sum()) == n
  assert len(b["node_mask"]) % 8 == 0 and len(b["senders"]) % 8 == 0
  x = b["x"]
  dense = np.zeros((len(b["node_mask"]), f), np.float32)
  np.add.at(dense, (x.row_K, x.col_K), x.value_K)
  np.testing.assert_allclose(dense[:n], graphs.row_normalize(d["features"]),
                             rtol=1e-6)
  np.testing.assert_allclose(dense[:n].sum(1)[d["features"].sum(1) > 0], 1,
                             rtol=1e-5)


def test_missing_and_malformed_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="tu/MUTAG/MUTAG.txt"):
    graphs.load_tu("MUTAG", datasets_dir=str(tmp_path))
  (tmp_path / "tu" / "MUTAG").mkdir(parents=True)
  bad = tmp_path / "tu" / "MUTAG" / "MUTAG.txt"
  bad.write_text("1\n2 0\n0 1 1\n0 x 0\n")
  with pytest.raises(ValueError, match=r"MUTAG.txt, line 4"):
    graphs.load_tu("MUTAG", datasets_dir=str(tmp_path))
  bad.write_text("1\n2 0\n0 1 5\n0 1 0\n")
  with pytest.raises(ValueError, match="neighbour outside"):
    graphs.load_tu("MUTAG", datasets_dir=str(tmp_path))
  (tmp_path / "planetoid").mkdir()
  np.savez(tmp_path / "planetoid" / "cora.npz", features=np.zeros((2, 2)))
  with pytest.raises(ValueError, match=r"cora.npz: missing arrays"):
    graphs.load_planetoid("cora", datasets_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match="citeseer.npz"):
    graphs.load_planetoid("citeseer", datasets_dir=str(tmp_path))


def test_pad_graphs_layout():
  ds = tiny_graphs.random_dataset(num_graphs=6)
  budget = graphs.budget_for(ds, 4, multiple=8)
  assert budget.graphs == 8 and budget.nodes % 8 == 0
  b = graphs.pad_graphs(ds, [3, 1, 4], budget)
  n_G = ds.num_nodes[[3, 1, 4]]
  assert b["node_mask"].sum() == n_G.sum()
  np.testing.assert_array_equal(b["node_graph"][:n_G.sum()],
                                np.repeat([0, 1, 2], n_G))
  np.testing.assert_array_equal(b["graph_mask"], np.arange(8) < 3)
  np.testing.assert_array_equal(b["label"][:3], ds.labels[[3, 1, 4]])
  assert b["edge_mask"].sum() == sum(len(ds.edges[i]) for i in (3, 1, 4))
  # one-hot tags on real nodes, zeros on padding
  np.testing.assert_array_equal(b["x"].sum(1), b["node_mask"].astype(float))
  with pytest.raises(ValueError, match="exceeds the budget"):
    graphs.pad_graphs(ds, range(6), graphs.Budget(4, 4, 4))


def test_iterator_is_deterministic_and_resumes():
  ds = tiny_graphs.random_dataset(num_graphs=7)
  it = graphs.GraphBatchIterator(ds, 3, seed=5)
  assert it.steps_per_epoch == 3   # 3 + 3 + 1, the last one kept
  first = [next(it) for _ in range(4)]
  state = it.get_state()
  rest = [next(it) for _ in range(3)]
  it2 = graphs.GraphBatchIterator(ds, 3, seed=5)
  it2.set_state(state)
  for a, b in zip(rest, [next(it2) for _ in range(3)]):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
  # An epoch visits every graph once.
  seen = np.concatenate([b["label"][b["graph_mask"]] for b in first[:3]])
  assert len(seen) == 7
  again = graphs.GraphBatchIterator(ds, 3, seed=5)
  np.testing.assert_array_equal(next(again)["x"], first[0]["x"])


def test_datasets_dir_env_is_used(monkeypatch, tmp_path):
  monkeypatch.setenv(shared.ENV_VAR, str(tmp_path))
  with pytest.raises(FileNotFoundError, match=str(tmp_path)):
    graphs.load_tu("NCI1")
  assert os.path.isdir(tmp_path)


def test_iterator_without_reshuffle_repeats_the_same_batches():
  # InfoGraph's reference: one shuffle, then the same batches every epoch.
  ds = tiny_graphs.random_dataset(num_graphs=7)
  fixed = graphs.GraphBatchIterator(ds, 3, seed=5, reshuffle=False)
  moving = graphs.GraphBatchIterator(ds, 3, seed=5)
  a = [next(fixed) for _ in range(9)]   # 3 epochs of 3 batches
  b = [next(moving) for _ in range(9)]
  same = lambda p, q: all(np.array_equal(p[k], q[k]) for k in p)  # noqa: E731
  for i in range(3):   # epoch 0 is the same in both modes
    assert same(a[i], b[i])
    assert same(a[i], a[i + 3]) and same(a[i], a[i + 6])
  assert not all(same(b[i], b[i + 3]) for i in range(3))
  resumed = graphs.GraphBatchIterator(ds, 3, seed=5, reshuffle=False)
  resumed.set_state({"seed": 5, "epoch": 2, "batch": 1})
  assert same(next(resumed), a[1]) and resumed.get_state()["batch"] == 2
