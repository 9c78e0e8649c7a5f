//! How fast MPI moves a large result between two ranks on this machine, to decide whether an
//! MPI transport for worker-to-worker transfers would beat the runtime's TCP (docs/mpi.md).
//! Needs the `mpi` feature:
//!
//!     cargo build --release --features mpi --example mpi_bandwidth
//!     mpirun --oversubscribe -np 2 target/release/examples/mpi_bandwidth 512
//!
//! Rank 0 sends MiB mebibytes to rank 1 with `MPI_Send`; the buffers are touched before the
//! clock starts (as the runtime's pooled receive buffers are when warm). Prints the median of
//! five rounds, and the first round (into memory the receiver had touched once).

use std::time::Instant;

use mpi::traits::*;

fn main() {
    let mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(512);
    let universe = mpi::initialize().expect("MPI initialises");
    let world = universe.world();
    assert_eq!(world.size(), 2, "run with mpirun -np 2");
    let mut buf = vec![1u8; mib << 20];
    let mut rounds = Vec::new();
    for _ in 0..6 {
        world.barrier();
        let t = Instant::now();
        if world.rank() == 0 {
            world.process_at_rank(1).send(&buf[..]);
        } else {
            world.process_at_rank(0).receive_into(&mut buf[..]);
        }
        // The receiver's clock stops when the data is there; it tells the sender.
        let mut secs = t.elapsed().as_secs_f64();
        world.process_at_rank(1).broadcast_into(&mut secs);
        rounds.push(secs);
    }
    if world.rank() == 0 {
        let gbs = |s: f64| (mib << 20) as f64 / s / 1e9;
        let first = rounds[0];
        let mut warm = rounds[1..].to_vec();
        warm.sort_by(f64::total_cmp);
        let median = warm[warm.len() / 2];
        println!(
            "MPI {mib} MiB rank 0 -> rank 1: {:.2} GB/s (median of {} warm rounds), first round {:.2} GB/s",
            gbs(median),
            warm.len(),
            gbs(first)
        );
    }
}
