"""rdask.array against NumPy: the same expressions the `array` command runs."""

import numpy as np
import pytest

import rdask
import rdask.array as ra

h5py = pytest.importorskip("h5py")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    path = tmp_path_factory.mktemp("arr") / "data.h5"
    rng = np.random.default_rng(5)
    x = rng.standard_normal((300, 200))
    i = rng.integers(-50, 50, size=(300, 200)).astype(np.int32)
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(50, 40))
        f.create_dataset("i", data=i, chunks=(100, 100))
    return str(path), x, i


def test_metadata_is_known_before_computing(data, client):
    path, x, _ = data
    a = ra.from_hdf5(path, "/x", chunks=(100, 50))
    assert a.shape == (300, 200) and a.dtype == np.float64 and a.ndim == 2
    assert a.chunks == ((100, 100, 100), (50, 50, 50, 50))
    assert a.chunksize == (100, 50)
    m = a.mean(axis=0)
    assert m.shape == (200,)
    # Shape errors show when the expression is built.
    with pytest.raises(ValueError, match="broadcast"):
        a + ra.ones((7, 3))


def test_elementwise_reductions_and_ufuncs_match_numpy(data, client):
    path, x, i = data
    a = ra.from_hdf5(path, "/x")
    b = ra.from_hdf5(path, "/i")
    np.testing.assert_allclose(((a + a) * 2 - 1).compute(), (x + x) * 2 - 1)
    np.testing.assert_allclose((a - a.mean(axis=0)).compute(), x - x.mean(axis=0))
    np.testing.assert_allclose(a.std(axis=1, ddof=1).compute(), x.std(axis=1, ddof=1))
    np.testing.assert_allclose(np.sqrt(abs(a)).compute(), np.sqrt(np.abs(x)))
    np.testing.assert_allclose(np.exp(-a).sum().compute(), np.exp(-x).sum())
    np.testing.assert_allclose((a.T @ a).compute(), x.T @ x, rtol=1e-10)
    np.testing.assert_allclose(a[10:200:3, ::-2].compute(), x[10:200:3, ::-2])
    np.testing.assert_allclose(np.sum(a, axis=0).compute(), x.sum(axis=0))
    # Integer and bool types promote as NumPy 2 does.
    got = (b + 1).compute()
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, i + 1)
    mask = (a > 0).compute()
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, x > 0)
    np.testing.assert_array_equal(ra.where(a > 0, a, 0).compute(), np.where(x > 0, x, 0))
    np.testing.assert_allclose((2.0 ** b.astype("f8")).max().compute(), (2.0 ** i).max())


def test_generators_and_compute_without_a_copy(client):
    o = ra.ones((1000, 10), chunks=(100, 10))
    np.testing.assert_array_equal(o.sum(axis=0).compute(), np.full(10, 1000.0))
    r = ra.arange(10, chunks=3)
    np.testing.assert_array_equal((r * r).compute(), np.arange(10) ** 2)
    z = ra.zeros((4, 4), dtype="int32")
    assert z.compute().dtype == np.int32
    full = ra.full((3,), 2.5).compute()
    # The returned array is the computed buffer itself, moved from Rust (its base is rust-numpy's
    # owner of that Vec), not a copy into a new NumPy buffer.
    assert type(full.base).__name__ == "PySliceContainer" and full.flags.writeable
    np.testing.assert_array_equal(full, [2.5, 2.5, 2.5])
    rnd = ra.random((100, 100), seed=3, chunks=(50, 50)).compute()
    assert rnd.shape == (100, 100) and 0 <= rnd.min() and rnd.max() < 1
    np.testing.assert_array_equal(rnd, ra.random((100, 100), seed=3, chunks=(50, 50)).compute())


def test_store_writes_hdf5(data, client, tmp_path):
    path, x, _ = data
    a = ra.from_hdf5(path, "/x")
    out = tmp_path / "out.h5"
    (a * 3).store(out, "/y")
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["y"][...], x * 3)
    with pytest.raises(ValueError, match="exists"):
        (a * 3).store(out, "/y")
    (a * 4).store(out, "/y", overwrite=True)
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["y"][...], x * 4)


def test_bad_input_is_refused_before_anything_runs(tmp_path, client):
    with pytest.raises(ValueError):
        ra.from_hdf5(tmp_path / "missing.h5", "/x")
    with pytest.raises(TypeError, match="fancy indexing"):
        ra.ones((3,))[[0, 1]]
    with pytest.raises(ValueError, match="ambiguous"):
        bool(ra.ones((3,)) > 0)
