//! Chunked n-d arrays over HDF5 datasets, like dask.array: lazy expressions ([`Array`])
//! become task graphs ([`plan`]) whose tasks ([`block`], [`kernels`]) read, compute and
//! write chunks on the workers.
//!
//! - [`data`]: one chunk's values, dtypes and NumPy's promotion rules, the wire form;
//! - [`block`]: what one task computes (fused elementwise chains, reads, reductions);
//! - [`lazy`]: the [`Array`] users build; [`compose`]: operations built from its others;
//! - [`plan`]: lowering an [`Array`] to tasks, running it, storing it;
//! - [`hdf5io`]: describing input datasets and writing outputs safely;
//! - [`h5read`]: reading a task's region on a worker (whole chunks, decoded here);
//! - [`codecs`]: the HDF5 filters we decode ourselves;
//! - [`kernels`]: the kernels registered in every worker;
//! - [`info`]: what an HDF5 file holds, for `rdask-jobqueue info`;
//! - [`netcdf`]: netCDF's fill values and packing applied to inputs.

pub mod block;
pub mod codecs;
pub mod compose;
pub mod data;
pub mod eval;
pub mod expr;
pub mod format;
pub mod h5read;
pub mod hdf5io;
pub mod info;
pub mod kernels;
pub mod lazy;
pub mod netcdf;
pub mod plan;

pub use data::{DType, Data, Scalar};
pub use lazy::Array;
pub use plan::{compute, store};
