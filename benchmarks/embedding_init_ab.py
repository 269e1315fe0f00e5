"""A/B: draft embedding initialized from the target's (SVD) vs random, same steps and data.

Run after `make run` (it needs the default profile's tokenized shards):
    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/embedding_init_ab.py [steps]
Prints, per init, the validation loss after `steps` pre-training steps (batch 8 x 512) and tokens/s.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from fastdraft_dag.config.presets import load_profile
from fastdraft_dag.draft.config import init_draft
from fastdraft_dag.storage.artifacts import ArtifactStore
from fastdraft_dag.targets.resolve import resolve_target
from fastdraft_dag.training.trainer import train


def main(steps: int = 40) -> None:
    profile = load_profile("default")
    root = Path("artifacts")
    target = resolve_target(profile.target, root / "targets")
    shards = ArtifactStore(root).latest("tokenized_shards", target.key).path
    for mode in ("target", "random"):
        with tempfile.TemporaryDirectory() as tmp:
            init_dir, out = Path(tmp) / "init", Path(tmp) / "out"
            init_draft(target.path, profile.pretrain.draft, init_dir, init_embeddings=mode)
            stage = {"name": "pretrain", "steps": steps, "batch_size": 8, "lr": 3e-3,
                     "min_lr": 3e-4, "warmup_steps": 5, "eval_every": 0, "eval_batches": 4,
                     "data": {"kind": "packed", "root": str(shards), "mix": {"text": 1.0}}}  # fmt: skip
            spec = {"backend": "cpu", "init_dir": str(init_dir), "out_dir": str(out), "seed": 0,
                    "threads": 2, "dtype": "fp32", "stages": [stage]}  # fmt: skip
            result = train(spec, lambda _: None, lambda _: None)["stages"][0]
            print(
                f"init={mode:6s} first_loss={result['first_train_loss']:.3f} "
                f"val_loss={result['val_loss']:.3f} tokens_per_s={result['tokens_per_s']:.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
