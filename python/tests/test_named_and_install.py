"""connect_named to a cluster started with `up` (on the real SLURM when RDASK_TEST_SLURM=1,
else the local system), and the wheel in a fresh virtualenv."""

import os
import subprocess
import sys
import tempfile
import time

import pytest

import rdask
from conftest import rdask_binary


def square(x):
    return x * x


def test_connect_named_runs_tasks_on_a_cluster_made_with_up():
    binary = rdask_binary()
    slurm = os.environ.get("RDASK_TEST_SLURM") == "1"
    # Under /tmp: batch jobs read the cluster's secret from here, and its socket path must
    # stay short.
    home = tempfile.mkdtemp(prefix="rdask-py-home-", dir="/tmp")
    name = "py%d" % os.getpid()
    env = dict(os.environ, RDASK_HOME=home)
    # The workers (rdask-jobqueue in a batch job) run Python tasks with this interpreter.
    env["RDASK_WORKER_PYTHON"] = sys.executable
    system = ["--system", "slurm", "--queue", "debug"] if slurm else ["--system", "local"]
    up = [binary, "up", "--name", name, *system, "--cores", "1", "--memory", "1GiB",
          "--walltime", "00:10:00", "--death-timeout", "20", "--scale", "1", "--wait"]
    out = subprocess.run(up, env=env, capture_output=True, text=True, timeout=180)
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        os.environ["RDASK_HOME"] = home
        try:
            with rdask.Client.connect_named(name) as client:
                deadline = time.time() + 120
                while client.n_workers() < 1 and time.time() < deadline:
                    time.sleep(0.2)
                assert client.n_workers() >= 1
                assert client.gather(client.map(square, range(20))) == [x * x for x in range(20)]
        finally:
            del os.environ["RDASK_HOME"]
    finally:
        subprocess.run([binary, "down", "--name", name], env=env, capture_output=True,
                       timeout=180)
        subprocess.run([binary, "down", "--name", name, "--force"], env=env,
                       capture_output=True, timeout=180)


def test_connect_named_to_no_such_cluster_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("RDASK_HOME", str(tmp_path))
    with pytest.raises((ValueError, RuntimeError), match="nosuch"):
        rdask.Client.connect_named("nosuch")


def test_the_wheel_imports_in_a_fresh_virtualenv(tmp_path):
    wheel = os.environ.get("RDASK_WHEEL")
    if not wheel:
        pytest.skip("RDASK_WHEEL is not set (tests/run.sh builds the wheel and sets it)")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = str(venv / "bin" / "python")
    pip = [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + [wheel], check=True, timeout=600)
    code = (
        "import rdask, rdask.array, inspect;"
        "assert inspect.getdoc(rdask.Client.submit);"
        "c = rdask.Client(n_workers=1);"
        "print(c.submit(lambda x: x * 2, 21).result(timeout=60));"
        "c.close()"
    )
    out = subprocess.run([py, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "42"
