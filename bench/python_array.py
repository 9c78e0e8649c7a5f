"""rdask.array on the 2 GiB benchmark file, end to end in a fresh process (start a local
cluster of 2 workers x 1 thread, compute, print the seconds), to set beside the `array`
command's own end-to-end time for the same expression."""

import json
import sys
import time

t0 = time.perf_counter()
import rdask  # noqa: E402
import rdask.array as ra  # noqa: E402

# The interpreter's imports (NumPy, the extension) are the one cost the command does not
# have; reported apart so the binding's own cost can be read beside the command's.
t_imported = time.perf_counter()

path, expr = sys.argv[1], sys.argv[2]
total_memory = int(open("/proc/meminfo").read().split()[1]) * 1024
with rdask.Client(n_workers=2, threads_per_worker=1, memory_limit=total_memory // 2):
    x = ra.from_hdf5(path, "/x")
    value = eval(expr, {"x": x}).compute()
t1 = time.perf_counter()
print(
    json.dumps(
        {
            "expr": expr,
            "seconds": t1 - t0,
            "after_import": t1 - t_imported,
            "shape": list(value.shape),
        }
    )
)
