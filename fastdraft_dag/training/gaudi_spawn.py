"""Gaudi launcher: `python -m fastdraft_dag.training.gaudi_spawn --world_size N SCRIPT ARGS...`.

optimum-habana ships its launcher as an example script (`examples/gaudi_spawn.py`), not as a
module, so this is the same few lines over `optimum.habana.distributed.DistributedRunner`: with
`--use_deepspeed` it runs `deepspeed --num_nodes 1 --num_gpus N --no_local_rank SCRIPT ARGS`
(one process per HPU, HCCL), without it `torch.distributed.run`. Only the Gaudi environment can
run it; `build_command` in the HPU training resource is what builds its command line.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Launch a training script on N Gaudi devices.")
    parser.add_argument("--world_size", type=int, default=1, help="number of HPUs")
    parser.add_argument("--use_deepspeed", action="store_true", help="DeepSpeed launcher")
    parser.add_argument("training_script", help="path of the script to run on every device")
    parser.add_argument("training_script_args", nargs=argparse.REMAINDER)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from optimum.habana.distributed import DistributedRunner

    command = shlex.join([args.training_script, *args.training_script_args])
    runner = DistributedRunner(
        command_list=[command], world_size=args.world_size, use_deepspeed=args.use_deepspeed
    )
    return int(runner.run() or 0)


if __name__ == "__main__":
    sys.exit(main())
