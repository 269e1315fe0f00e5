"""The HPU training resource: run the trainer as its own process through Dagster Pipes.

The trainer runs out of process so it can live in another environment: the Intel Gaudi stack pins
its own torch and transformers (see docs), so `python_executable` may point at that venv or a
container wrapper. Logs and stage summaries come back over Pipes; the result is `metrics.json`.

Multi-device: `build_command` already builds the torchrun / Gaudi launcher commands, but the loop
is single-process for now and refuses WORLD_SIZE > 1 with a clear error; DDP / DeepSpeed /
GaudiTrainer land in a later issue behind the same command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from fastdraft_dag.training import run as run_module
from fastdraft_dag.training.backends import resolve_backend

RUN_MODULE = "fastdraft_dag.training.run"
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the dir holding fastdraft_dag/


def build_command(python: str, backend: str, num_devices: int, spec_path: Path) -> list[str]:
    """The trainer's command line for one or N devices (pure, so it is unit-tested)."""
    if num_devices < 1:
        raise ValueError(f"num_devices={num_devices} must be >= 1")
    spec = ["--spec", str(spec_path)]
    if num_devices == 1:
        return [python, "-m", RUN_MODULE, *spec]
    if backend == "hpu":
        # gaudi_spawn takes a script path (not -m), hence run.py's absolute imports.
        return [
            python, "-m", "optimum.habana.distributed.gaudi_spawn",
            "--world_size", str(num_devices), "--use_deepspeed",
            str(Path(run_module.__file__).resolve()), *spec,
        ]  # fmt: skip
    return [
        python, "-m", "torch.distributed.run", "--standalone",
        "--nproc_per_node", str(num_devices), "-m", RUN_MODULE, *spec,
    ]  # fmt: skip


def probe_backend(python: str) -> str:
    """The backend the trainer's interpreter sees (it may be another env, e.g. the Gaudi one)."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        from fastdraft_dag.training.backends import detect_backend

        return detect_backend()
    out = subprocess.run(
        [python, "-m", "fastdraft_dag.training.backends"],
        capture_output=True, text=True, check=True, env=_pythonpath_env({}), timeout=300,
    )  # fmt: skip
    return out.stdout.strip().splitlines()[-1]


def _pythonpath_env(extra: dict[str, str]) -> dict[str, str]:
    """Make this checkout importable from another interpreter, without clobbering the caller's."""
    import os

    path = os.pathsep.join(p for p in (PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


class HPUTrainingResource(dg.ConfigurableResource):
    """Where and how the trainer runs: backend, devices, interpreter, threads, extra env."""

    backend: str = "auto"
    num_devices: int = 1
    python_executable: str = ""  # empty: this interpreter
    threads: int = 2
    env: dict[str, str] = Field(default_factory=dict)

    @property
    def python(self) -> str:
        return self.python_executable or sys.executable

    def resolved_backend(self) -> str:
        """Decided before launch: asking for hpu where there is none fails here, not hours later."""
        return resolve_backend(self.backend, detected=probe_backend(self.python))

    def subprocess_env(self) -> dict[str, str]:
        threads = str(self.threads)
        base = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
                "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
        env = _pythonpath_env({**base, **self.env})
        return {k: env[k] for k in (*base, "PYTHONPATH", *self.env)}

    def train(self, context: Any, spec: dict[str, Any], work_dir: Path) -> dict[str, Any]:
        """Write the spec, run the trainer under Pipes, return its `metrics.json`."""
        backend = self.resolved_backend()
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        spec = {**spec, "backend": backend, "threads": self.threads}
        spec_path = work_dir / "train_spec.json"
        spec_path.write_text(json.dumps(spec, indent=2))
        command = build_command(self.python, backend, self.num_devices, spec_path)
        context.log.info(f"launching trainer on {backend} x{self.num_devices}: {' '.join(command)}")
        dg.PipesSubprocessClient().run(context=context, command=command, env=self.subprocess_env())
        metrics_path = Path(spec["out_dir"]) / "metrics.json"
        if not metrics_path.is_file():
            raise RuntimeError(f"trainer exited cleanly but wrote no {metrics_path}")
        return json.loads(metrics_path.read_text())
