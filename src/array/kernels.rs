//! The array kernels workers run (registered in every worker's built-in registry).

use bytes::Bytes;

use super::block::{Block, Partial, Reduction};
use super::data::Data;
use super::h5read::FileReader;
use super::hdf5io;
use super::plan::{StoreArgs, KERNEL_BLOCK, KERNEL_COMBINE, KERNEL_PARTIAL, KERNEL_STORE};
use crate::kernels::Registry;

fn decode<'a, T: serde::Deserialize<'a>>(args: &'a [u8], kernel: &str) -> Result<T, String> {
    postcard::from_bytes(args).map_err(|e| format!("{kernel}: malformed arguments: {e}"))
}

fn inputs(inputs: &[Bytes]) -> Result<Vec<Data>, String> {
    inputs.iter().map(|b| Data::decode(b)).collect()
}

pub fn register(r: &mut Registry) {
    r.register(KERNEL_BLOCK, |args, ins| {
        let block: Block = decode(args, KERNEL_BLOCK)?;
        Ok(block.evaluate(&inputs(ins)?, &FileReader)?.encode())
    });
    r.register(KERNEL_PARTIAL, |args, ins| {
        let (reduction, block): (Reduction, Block) = decode(args, KERNEL_PARTIAL)?;
        let data = block.evaluate(&inputs(ins)?, &FileReader)?;
        Ok(Bytes::from(Partial::of(data, &reduction)?.encode()))
    });
    r.register(KERNEL_COMBINE, |args, ins| {
        let (reduction, finish): (Reduction, bool) = decode(args, KERNEL_COMBINE)?;
        let mut partials = ins.iter().map(|b| Partial::decode(b));
        let first = partials
            .next()
            .ok_or_else(|| format!("{KERNEL_COMBINE}: no inputs"))??;
        let merged = partials.try_fold(first, |acc, p| acc.merge(p?, reduction.op))?;
        Ok(if finish {
            merged.finish(&reduction)?.encode()
        } else {
            Bytes::from(merged.encode())
        })
    });
    r.register(KERNEL_STORE, |args, ins| {
        let s: StoreArgs = decode(args, KERNEL_STORE)?;
        let data = s.block.evaluate(&inputs(ins)?, &FileReader)?;
        hdf5io::write_chunk(&s.file, &s.dataset, &s.offset, &data)?;
        Ok(Bytes::copy_from_slice(&(data.len() as u64).to_le_bytes()))
    });
}
