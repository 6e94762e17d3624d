"""Every public entry point on explicit-axis, auto-axis and 2-D meshes equals one device.

`jax.make_mesh` gives explicit axes by default; inputs may be pre-sharded or
not, the mesh passed as `mesh=` or not, inside `jax.set_mesh` and under an
outer `jax.jit`. kNN indices must be identical, scores within 1e-5.
"""

import jax
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import platonic_jax as pj
from conftest import correlated_pair

N, K = 64, 5  # N divisible by 8: explicit shardings must divide evenly

HYPER = {"mutual_knn": {"k": K}, "cycle_knn": {"k": K}, "lcs_knn": {"k": K},
         "edit_distance_knn": {"k": K}, "cknna": {"k": K}, "cka": {}, "unbiased_cka": {},
         "svcca": {"cca_dim": 4}}


def _meshes():
  devices = np.array(jax.devices()[:8])
  return {
      "explicit": jax.make_mesh((8,), ("rows",)),
      "auto": Mesh(devices, ("rows",)),
      "explicit-2d": jax.make_mesh((4, 2), ("rows", "model")),
  }


@pytest.fixture(scope="module", params=list(_meshes()))
def mesh(request):
  return _meshes()[request.param]


@pytest.fixture(scope="module")
def data():
  a, b = correlated_pair(np.random.default_rng(7), N, 12, 9)
  return a, b


@pytest.fixture(scope="module")
def single(data):
  a, b = data
  return {name: float(pj.measure(name, a, b, **hyper)) for name, hyper in HYPER.items()}


def _rows(x, mesh):
  return jax.device_put(x, NamedSharding(mesh, P("rows")))


def _calls(mesh, fn, a, b):
  """(label, thunk) for every way a user reaches `fn(a, b, mesh=?)` with this mesh."""
  sa, sb = _rows(a, mesh), _rows(b, mesh)

  def in_context():
    with jax.set_mesh(mesh):
      return fn(sa, sb)

  def jit_in_context():
    with jax.set_mesh(mesh):
      return jax.jit(fn)(sa, sb)

  return [
      ("pre-sharded", lambda: fn(sa, sb)),
      ("pre-sharded, mesh=", lambda: fn(sa, sb, mesh=mesh, axis_name="rows")),
      ("host arrays, mesh=", lambda: fn(a, b, mesh=mesh, axis_name="rows")),
      ("outer jit", lambda: jax.jit(fn)(sa, sb)),
      ("set_mesh", in_context),
      ("set_mesh + jit", jit_in_context),
  ]


@pytest.mark.parametrize("name", sorted(HYPER))
def test_metrics_equal_single_device_everywhere(mesh, data, single, name):
  a, b = data
  info = pj.get_metric(name)

  def fn(x, y, **placement):
    return info.fn(x, y, **HYPER[name], **placement)

  for label, call in _calls(mesh, fn, a, b):
    np.testing.assert_allclose(float(call()), single[name], atol=1e-5, err_msg=label)
  sa, sb = _rows(a, mesh), _rows(b, mesh)
  np.testing.assert_allclose(float(pj.measure(name, sa, sb, **HYPER[name])), single[name],
                             atol=1e-5, err_msg="measure")


def test_knn_indices_identical_and_computed_where_they_live(mesh, data):
  a, _ = data
  expected = np.asarray(pj.knn(a, K))
  for label, call in _calls(mesh, lambda x, _, **p: pj.knn(x, K, **p), a, a):
    out = call()
    np.testing.assert_array_equal(np.asarray(out), expected, err_msg=label)
  out = pj.knn(_rows(a, mesh), K)
  rows = "rows"
  assert out.sharding.spec[0] in (rows, (rows,)), out.sharding  # row-sharded, not gathered


def test_from_indices_on_sharded_lists(mesh, data):
  a, b = data
  ia, ib = pj.knn(a, K), pj.knn(b, K)
  sia, sib = _rows(np.asarray(ia), mesh), _rows(np.asarray(ib), mesh)
  for fn in (pj.mutual_knn_from_indices, pj.cycle_knn_from_indices, pj.lcs_knn_from_indices,
             pj.edit_distance_knn_from_indices):
    expected = float(fn(ia, ib))
    np.testing.assert_allclose(float(fn(sia, sib)), expected, atol=1e-6, err_msg=fn.__name__)
    np.testing.assert_allclose(float(jax.jit(fn)(sia, sib)), expected, atol=1e-6)
  expected = float(pj.cknna_from_indices(a, b, ia, ib))
  sa, sb = _rows(a, mesh), _rows(b, mesh)
  np.testing.assert_allclose(float(pj.cknna_from_indices(sa, sb, sia, sib)), expected, atol=1e-5)
  np.testing.assert_allclose(float(jax.jit(pj.cknna_from_indices)(sa, sb, sia, sib)), expected,
                             atol=1e-5)


@pytest.mark.parametrize("name", ["mutual_knn", "cknna", "cka"])
def test_layer_grid_and_zoo_on_sharded_layers(mesh, data, name):
  a, b = data
  layers_a, layers_b = np.stack([a, 2 * a]), np.stack([b, b + 1])
  hyper = HYPER[name]
  expected = np.asarray(pj.layer_grid(name, layers_a, layers_b, **hyper).scores)
  sharded = [jax.device_put(x, NamedSharding(mesh, P(None, "rows"))) for x in (layers_a, layers_b)]
  np.testing.assert_allclose(pj.layer_grid(name, *sharded, **hyper).scores, expected, atol=1e-5)
  jitted = jax.jit(lambda x, y: pj.layer_grid(name, x, y, **hyper).scores)
  np.testing.assert_allclose(jitted(*sharded), expected, atol=1e-5)
  zoo = pj.zoo_alignment(sharded, name, **hyper)
  np.testing.assert_allclose(zoo.scores[0, 1], expected.max(), atol=1e-5)
  listed = [_rows(x, mesh) for x in layers_a]
  np.testing.assert_allclose(pj.layer_grid(name, listed, sharded[1], **hyper).scores, expected,
                             atol=1e-5)


def test_prepare_features_on_sharded_input(mesh, data):
  a, _ = data
  np.testing.assert_allclose(pj.prepare_features(_rows(a, mesh)), pj.prepare_features(a),
                             atol=1e-6)


def test_rows_on_one_axis_of_a_two_dimensional_mesh(data, single):
  a, b = data
  mesh = jax.make_mesh((2, 4), ("model", "rows"))
  sa, sb = _rows(a, mesh), _rows(b, mesh)
  np.testing.assert_array_equal(pj.knn(sa, K), pj.knn(a, K))
  for name in ("mutual_knn", "cknna", "unbiased_cka", "svcca"):
    np.testing.assert_allclose(float(pj.measure(name, sa, sb, **HYPER[name])), single[name],
                               atol=1e-5, err_msg=name)


def test_axis_name_without_a_mesh_is_an_error(data):
  a, b = data
  with pytest.raises(ValueError, match="`axis_name`.*needs `mesh`"):
    pj.mutual_knn(a, b, k=K, axis_name="rows")
