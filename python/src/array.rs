//! `rdask.array`'s Rust side: an expression in the `array` command's language (the Python
//! `Array` builds its text) is evaluated by `rdask::array::eval` with the same inputs the
//! command's `--input NAME=FILE:/DATASET` gives, then planned and run by `rdask::array::plan`,
//! exactly as the command does. Nothing about arrays is decided here.

use std::collections::HashMap;

use numpy::{IntoPyArray, PyArrayDyn};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use rdask::array::data::Data;
use rdask::array::eval::{self, Context};
use rdask::array::Array;

use super::{block_on, py_err, Client};

/// An input: its name in the expression, the HDF5 file and dataset, its chunk shape.
type Input = (String, String, String, Option<Vec<usize>>);

fn evaluate(expr: &str, inputs: Vec<Input>) -> PyResult<Array> {
    let mut arrays = HashMap::new();
    for (name, file, dataset, chunks) in inputs {
        let a =
            Array::from_hdf5(&file, &dataset, chunks.as_deref()).map_err(PyValueError::new_err)?;
        arrays.insert(name, a);
    }
    let ctx = Context {
        inputs: arrays,
        default_chunks: None,
    };
    eval::evaluate(expr, &ctx).map_err(PyValueError::new_err)
}

/// (shape, dtype name, chunks) of an expression, without computing it: every shape or type
/// error shows here, when the Python expression is built.
#[pyfunction]
fn array_info(expr: &str, inputs: Vec<Input>) -> PyResult<(Vec<usize>, String, Vec<Vec<usize>>)> {
    let a = evaluate(expr, inputs)?;
    Ok((
        a.shape().to_vec(),
        a.dtype().name().to_string(),
        a.chunks().to_vec(),
    ))
}

/// Computes an expression on the client's cluster; the value comes back as a NumPy array
/// that owns the computed buffer (moved, not copied). Booleans come as uint8 (the Python
/// side views them as bool).
#[pyfunction]
#[pyo3(signature = (client, expr, inputs))]
fn array_compute<'py>(
    py: Python<'py>,
    client: &Client,
    expr: &str,
    inputs: Vec<Input>,
) -> PyResult<Bound<'py, PyAny>> {
    let a = evaluate(expr, inputs)?;
    let c = client.get()?;
    let data = block_on(py, None, async move {
        rdask::array::plan::compute(&c, &a).await
    })?
    .map_err(py_err)?;
    Ok(match data {
        Data::F64(x) => x.into_pyarray(py).into_any(),
        Data::F32(x) => x.into_pyarray(py).into_any(),
        Data::I64(x) => x.into_pyarray(py).into_any(),
        Data::I32(x) => x.into_pyarray(py).into_any(),
        Data::Bool(x) => {
            let arr: Bound<'py, PyArrayDyn<u8>> = x.into_pyarray(py);
            arr.into_any()
        }
    })
}

/// Stores an expression to `file:dataset` (HDF5) through the client's cluster, as the
/// `array --output` command does (a temporary file renamed when every chunk is written).
#[pyfunction]
#[pyo3(signature = (client, expr, inputs, file, dataset, overwrite))]
fn array_store(
    py: Python<'_>,
    client: &Client,
    expr: &str,
    inputs: Vec<Input>,
    file: String,
    dataset: String,
    overwrite: bool,
) -> PyResult<()> {
    let a = evaluate(expr, inputs)?;
    rdask::array::hdf5io::check_output(&file, &dataset, overwrite)
        .map_err(PyValueError::new_err)?;
    let c = client.get()?;
    block_on(py, None, async move {
        rdask::array::plan::store(&c, &a, &file, &dataset, overwrite).await
    })?
    .map_err(py_err)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(array_info, m)?)?;
    m.add_function(wrap_pyfunction!(array_compute, m)?)?;
    m.add_function(wrap_pyfunction!(array_store, m)?)?;
    Ok(())
}
