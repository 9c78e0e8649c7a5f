"""Records the directive lines dask-jobqueue writes for each example (see README.md).

Run from the repository root:
    PYTHONPATH=/tmp/djq bench/.venv/bin/python tests/data/dask-jobqueue/record.py
"""
import copy
import os
import warnings

import dask
import yaml

from dask_jobqueue.lsf import LSFJob
from dask_jobqueue.moab import MoabJob
from dask_jobqueue.oar import OARJob
from dask_jobqueue.pbs import PBSJob
from dask_jobqueue.sge import SGEJob
from dask_jobqueue.slurm import SLURMJob

HERE = os.path.dirname(os.path.abspath(__file__))
JOBS = {
    "slurm": (SLURMJob, "#SBATCH"),
    "pbs": (PBSJob, "#PBS"),
    "sge": (SGEJob, "#$"),
    "lsf": (LSFJob, "#BSUB"),
    "oar": (OARJob, "#OAR"),
    "moab": (MoabJob, "#PBS"),
}
# Keep in step with EXAMPLES in tests/config_import.rs: (example, systems, cores and memory
# for sections that leave them unset).
EXAMPLES = [
    ("jobqueue", ["slurm", "pbs", "sge", "lsf", "oar", "moab"], {"cores": 2, "memory": "6GB"}),
    ("cheyenne", ["pbs", "slurm"], {}),
    ("cori", ["slurm"], {}),
    ("arm-stratus", ["pbs"], {}),
    ("comet", ["slurm"], {}),
    ("datarmor", ["pbs"], {}),
    ("docs-pbs", ["pbs"], {}),
    ("other-systems", ["sge", "lsf", "oar", "moab"], {}),
]

initial = copy.deepcopy(dask.config.config)
warnings.simplefilter("ignore")
os.makedirs(os.path.join(HERE, "headers"), exist_ok=True)
for example, systems, kwargs in EXAMPLES:
    with open(os.path.join(HERE, f"{example}.yaml")) as f:
        config = yaml.safe_load(f)
    # In place: dask.config.get holds a reference to this very dict.
    dask.config.config.clear()
    dask.config.config.update(copy.deepcopy(initial))
    dask.config.update(dask.config.config, config, priority="new")
    for system in systems:
        job_class, prefix = JOBS[system]
        # name: as `JobQueueCluster.job_script()` makes its jobs (LSF writes it into -e/-o).
        job = job_class(scheduler="tcp://SCHEDULER:8786", name="dummy-name", **kwargs)
        script = job.job_script()
        lines = [l for l in script.splitlines() if l.startswith(prefix + " ")]
        with open(os.path.join(HERE, "headers", f"{example}.{system}.txt"), "w") as out:
            out.write("\n".join(lines) + "\n")
        print(f"{example}.{system}: {len(lines)} lines")
