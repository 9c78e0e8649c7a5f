//! Chunked n-d arrays over HDF5 datasets, like dask.array: lazy expressions ([`Array`])
//! become task graphs ([`plan`]) whose tasks ([`block`], [`kernels`]) read, compute and
//! write chunks on the workers.
//!
//! - [`data`]: one chunk's values, dtypes and NumPy's promotion rules, the wire form;
//! - [`block`]: what one task computes (fused elementwise chains, reads, reductions);
//! - [`lazy`]: the [`Array`] users build;
//! - [`plan`]: lowering an [`Array`] to tasks, running it, storing it;
//! - [`hdf5io`]: describing input datasets and writing outputs safely;
//! - [`h5read`]: reading a task's region on a worker (whole chunks, decoded here);
//! - [`codecs`]: the HDF5 filters we decode ourselves;
//! - [`kernels`]: the kernels registered in every worker.

pub mod block;
pub mod codecs;
pub mod data;
pub mod eval;
pub mod expr;
pub mod format;
pub mod h5read;
pub mod hdf5io;
pub mod kernels;
pub mod lazy;
pub mod plan;

pub use data::{DType, Data, Scalar};
pub use lazy::Array;
pub use plan::{compute, store};
