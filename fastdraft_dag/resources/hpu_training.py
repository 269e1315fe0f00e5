"""The HPU training resource: run the trainer as its own process through Dagster Pipes.

The trainer runs out of process so it can live in another environment: the Intel Gaudi stack pins
its own torch and transformers (optimum-habana 1.21 needs transformers 4.55), so
`python_executable` may point at that venv or a container wrapper. Logs, evaluations and stage
summaries come back over Pipes; the result is `metrics.json` in the output directory.

Launchers:
- `subprocess` (default): `PipesSubprocessClient` on this machine. One device runs
  `python -m fastdraft_dag.training.run`; N CPU/CUDA devices run it under torchrun (DDP, gloo on
  CPU); N Gaudi devices under `fastdraft_dag.training.gaudi_spawn` (DeepSpeed launcher, ZeRO).
- `k8s`: `dagster_k8s.PipesK8sClient` starts the same command in a pod (`pip install
  'fastdraft-dag[k8s]'`). The pod must see the artifact root at the same path (mount the volume
  in `k8s_pod_spec`) and ask for the accelerators there (e.g. `habana.ai/gaudi: 8`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from fastdraft_dag.core.settings import Settings
from fastdraft_dag.training import run as run_module
from fastdraft_dag.training.backends import BACKENDS, detect_backend, resolve_backend
from fastdraft_dag.training.spec import TrainSpec

RUN_MODULE = "fastdraft_dag.training.run"
GAUDI_SPAWN = "fastdraft_dag.training.gaudi_spawn"
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])  # the dir holding fastdraft_dag/


def build_command(python: str, backend: str, num_devices: int, spec_path: Path) -> list[str]:
    """The trainer's command line for one or N devices (pure, so it is unit-tested)."""
    if num_devices < 1:
        raise ValueError(f"num_devices={num_devices} must be >= 1")
    spec = ["--spec", str(spec_path)]
    if num_devices == 1:
        return [python, "-m", RUN_MODULE, *spec]
    if backend == "hpu":
        # The DeepSpeed launcher takes a script path (not -m), hence run.py's absolute imports.
        return [
            python,
            "-m",
            GAUDI_SPAWN,
            "--world_size",
            str(num_devices),
            "--use_deepspeed",
            str(Path(run_module.__file__).resolve()),
            *spec,
        ]
    return [
        python,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(num_devices),
        "-m",
        RUN_MODULE,
        *spec,
    ]


def probe_backend(python: str) -> str:
    """The backend the trainer's interpreter sees (it may be another env, e.g. the Gaudi one)."""
    if Path(python).resolve() == Path(sys.executable).resolve():
        return detect_backend()
    out = subprocess.run(
        [python, "-m", "fastdraft_dag.training.backends"],
        capture_output=True,
        text=True,
        check=True,
        env=_pythonpath_env({}),
        timeout=300,
    )
    return out.stdout.strip().splitlines()[-1]


def _pythonpath_env(extra: dict[str, str]) -> dict[str, str]:
    """Make this checkout importable from another interpreter, without clobbering the caller's."""
    path = os.pathsep.join(p for p in (PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


class HPUTrainingResource(dg.ConfigurableResource):
    """Where and how the trainer runs: backend, devices, interpreter, launcher, checkpoints."""

    backend: str = Field(default="auto", description="auto | hpu | cuda | cpu")
    num_devices: int = Field(default=1, description="processes (one per device)")
    python_executable: str = Field(default="", description="trainer's interpreter; '' = this one")
    threads: int = Field(default=2, description="CPU threads, split over CPU processes")
    env: dict[str, str] = Field(default_factory=dict)
    checkpoint_every: int = Field(
        default=50, description="steps between checkpoints; 0 = stage ends"
    )
    compile: bool = Field(default=False, description="torch.compile the decoder (cpu/cuda)")
    peak_tflops: float = Field(default=0.0, description="per-device peak for MFU; 0 = auto")
    zero_stage: int = Field(default=2, description="DeepSpeed ZeRO stage on hpu with N devices")
    launcher: str = Field(default="subprocess", description="subprocess | k8s")
    k8s_image: str = Field(default="", description="k8s: image with the trainer's environment")
    k8s_namespace: str = Field(default="", description="k8s: namespace ('' = the client's)")
    k8s_pod_spec: dict[str, Any] = Field(
        default_factory=dict, description="k8s: base pod spec (volumes, resources, nodeSelector)"
    )

    @classmethod
    def from_env(cls, threads: int) -> HPUTrainingResource:
        """The deployment's settings from FASTDRAFT_HPU_* variables (see the README), so moving
        training to a Gaudi server or a cluster is configuration, not code."""
        env = Settings.from_env()
        pod_spec = env.k8s_pod_spec
        return cls(
            backend=env.hpu_backend,
            num_devices=env.hpu_devices,
            python_executable=env.hpu_python,
            threads=threads,
            checkpoint_every=env.checkpoint_every,
            launcher=env.hpu_launcher,
            k8s_image=env.k8s_image,
            k8s_namespace=env.k8s_namespace,
            k8s_pod_spec=json.loads(Path(pod_spec).read_text()) if pod_spec else {},
        )

    @property
    def python(self) -> str:
        if self.python_executable:
            return self.python_executable
        return "python" if self.launcher == "k8s" else sys.executable

    def resolved_backend(self) -> str:
        """Decided before launch: asking for hpu where there is none fails here, not hours later.

        A pod's hardware cannot be probed from here, so under `k8s` the trainer decides (and
        refuses an absent backend the same way) inside the pod.
        """
        if self.launcher == "k8s":
            if self.backend not in (*BACKENDS, "auto"):
                raise ValueError(f"backend {self.backend!r}: expected auto, {', '.join(BACKENDS)}")
            return self.backend
        return resolve_backend(self.backend, detected=probe_backend(self.python))

    def threads_per_process(self, backend: str) -> int:
        """CPU processes share the cores: N processes x (threads / N) threads."""
        if backend in ("cpu", "auto"):
            return max(1, self.threads // self.num_devices)
        return self.threads

    def spec_overrides(self, backend: str) -> dict[str, Any]:
        """The run-time settings this resource owns (they do not change what is learned)."""
        return {
            "backend": backend,
            "threads": self.threads_per_process(backend),
            "checkpoint_every": self.checkpoint_every,
            "compile": self.compile,
            "peak_flops": self.peak_tflops * 1e12,
            "zero_stage": self.zero_stage,
        }

    def subprocess_env(self, backend: str = "cpu") -> dict[str, str]:
        threads = str(self.threads_per_process(backend))
        base = {
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "TOKENIZERS_PARALLELISM": "false",
        }
        env = _pythonpath_env({**base, **self.env})
        return {k: env[k] for k in (*base, "PYTHONPATH", *self.env)}

    def k8s_run_kwargs(self, command: list[str], env: dict[str, str]) -> dict[str, Any]:
        """Keywords for `PipesK8sClient.run` (pure, so it is unit-tested without a cluster)."""
        if not self.k8s_image:
            raise ValueError("launcher 'k8s' needs k8s_image: an image with the trainer's env")
        return {
            "image": self.k8s_image,
            "command": command,
            "namespace": self.k8s_namespace or None,
            "env": {k: v for k, v in env.items() if k != "PYTHONPATH"},
            "base_pod_spec": self.k8s_pod_spec or None,
        }

    def _launch(self, context: Any, command: list[str], backend: str) -> None:
        env = self.subprocess_env(backend)
        if self.launcher == "subprocess":
            if self.num_devices == 1:  # the trainer dies with us (run.py: die_with_parent)
                env[run_module.PARENT_ENV] = str(os.getpid())
            dg.PipesSubprocessClient().run(context=context, command=command, env=env)
        elif self.launcher == "k8s":
            try:
                from dagster_k8s import PipesK8sClient
            except ImportError as exc:
                raise RuntimeError(
                    "launcher 'k8s' needs dagster-k8s: pip install 'fastdraft-dag[k8s]'"
                ) from exc
            PipesK8sClient().run(context=context, **self.k8s_run_kwargs(command, env))
        else:
            raise ValueError(f"launcher {self.launcher!r}: expected 'subprocess' or 'k8s'")

    def train(self, context: Any, spec: TrainSpec, work_dir: Path) -> dict[str, Any]:
        """Write the spec, run the trainer under Pipes, return its `metrics.json`."""
        backend = self.resolved_backend()
        work_dir = Path(work_dir)
        work_dir.mkdir(parents=True, exist_ok=True)
        spec = spec.with_runtime(**self.spec_overrides(backend))
        spec_path = work_dir / "train_spec.json"
        spec_path.write_text(json.dumps(spec.to_dict(), indent=2))
        command = build_command(self.python, backend, self.num_devices, spec_path)
        context.log.info(
            f"launching trainer ({self.launcher}) on {backend} x{self.num_devices}: "
            + " ".join(command)
        )
        self._launch(context, command, backend)
        metrics_path = Path(spec.out_dir) / "metrics.json"
        if not metrics_path.is_file():
            raise RuntimeError(f"trainer exited cleanly but wrote no {metrics_path}")
        return json.loads(metrics_path.read_text())
