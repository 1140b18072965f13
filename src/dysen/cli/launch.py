"""``dysen launch``: a training command in N processes per machine (DDP: NCCL on GPUs, gloo on the CPU).

It prints, then runs, ``python -m torch.distributed.run … -m dysen.cli COMMAND …`` (torchrun), and prints the
``accelerate launch`` line that does the same. Accelerate 1.16 starts N processes only through its multi-GPU
launcher (torchrun), which ``--multi_gpu`` selects, on a CPU-only machine too (with two GPUs or more it picks it
by itself); with ``--cpu``, or with fewer than two GPUs and no ``--multi_gpu``, it uses its simple launcher, which
starts ONE process whatever ``--num_processes`` says, and says nothing. So ``accelerate launch --num_processes N
--cpu`` trains in one process; the line printed here passes ``--multi_gpu`` and leaves ``--cpu`` to the dysen
command.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import dataclass

from dysen.cli.argtypes import nonnegative_int, port, positive_int
from dysen.errors import DysenError

TRAINING_COMMANDS = ("train-vae", "train-vdm", "finetune", "train-backbone", "train-adapter")
"""The commands that train through the one loop (``dysen.train.loop``), the ones that run in several processes."""
ACCELERATE_NOTE = " (--multi_gpu selects its torchrun launcher, on the CPU too; --cpu would start one process)"
MANY_MACHINES_PORT = 29500  # torchrun's and Accelerate's default port on machine 0


class LaunchError(DysenError):
    """A launch that cannot start as asked (a command that is not a training one, more processes than GPUs…)."""


@dataclass(frozen=True)
class Launch:
    """How to start ``command`` on this machine: its processes, the machines, the rendezvous, threads on the CPU."""

    command: tuple[str, ...]  # the dysen command and its flags, e.g. ("train-vdm", "--out", "runs/vdm")
    processes: int  # on this machine (torchrun's --nproc_per_node)
    machines: int = 1
    machine_rank: int = 0
    main_address: str | None = None  # machine 0's address (several machines only)
    main_port: int | None = None  # None on one machine: any free port
    threads: int | None = None  # OMP_NUM_THREADS of each process on the CPU; None: torchrun's default (1)

    def environment(self) -> dict[str, str]:
        """What the launch adds to the environment."""
        return {} if self.threads is None else {"OMP_NUM_THREADS": str(self.threads)}

    def torchrun(self) -> list[str]:
        """The torchrun argv (run with ``environment()`` added)."""
        argv = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(self.processes)]
        if self.machines > 1:
            argv += ["--nnodes", str(self.machines), "--node_rank", str(self.machine_rank)]
            argv += ["--master_addr", str(self.main_address), "--master_port", str(self.main_port)]
        elif self.main_port is None:
            argv.append("--standalone")  # a rendezvous on a free local port: two runs on one machine do not clash
        else:
            argv += ["--master_port", str(self.main_port)]
        return [*argv, "-m", "dysen.cli", *self.command]

    def accelerate(self) -> list[str]:
        """The ``accelerate launch`` argv that starts the same processes (its --num_processes counts every machine)."""
        total = self.processes * self.machines
        argv = ["accelerate", "launch", *(["--multi_gpu"] if total > 1 else []), "--num_machines", str(self.machines)]
        if self.machines > 1:
            argv += ["--machine_rank", str(self.machine_rank), "--main_process_ip", str(self.main_address)]
        argv += ["--num_processes", str(total), "--main_process_port", str(self.main_port or 0)]  # 0: a free port
        if self.threads is not None:
            argv += ["--num_cpu_threads_per_process", str(self.threads)]  # it sets OMP_NUM_THREADS from this
        return [*argv, "-m", "dysen.cli", *self.command]

    def lines(self) -> str:
        """Both launch lines as shell text, each under a comment that says what it starts."""
        where = "GPUs" if self.threads is None else "the CPU"
        what = f"{_count(self.processes, 'process', 'processes')} on {where}"
        if self.threads is not None:
            what += f" ({_count(self.threads, 'thread', 'threads')}{' each' if self.processes > 1 else ''})"
        if self.machines > 1:
            what += f" on each of {self.machines} machines (this one: rank {self.machine_rank})"
        env = "".join(f"{name}={value} " for name, value in self.environment().items())
        return (
            f"# {what}: world size {self.processes * self.machines}\n{env}{shlex.join(self.torchrun())}\n"
            f"# the same with Accelerate{ACCELERATE_NOTE if self.processes * self.machines > 1 else ''}:\n"
            f"{shlex.join(self.accelerate())}\n"
        )


def configure_launch(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--processes", type=positive_int, metavar="N",
        help="processes on this machine (default: one per GPU here; on the CPU there is no default: one process "
        "already uses every core through its threads, so say how many)",
    )  # fmt: skip
    p.add_argument(
        "--cpu", action="store_true",
        help="train on the CPU (gloo) even with GPUs here: passes --cpu to the command; each process gets "
        "OMP_NUM_THREADS = cores / N unless it is set",
    )  # fmt: skip
    p.add_argument(
        "--print", action="store_true", dest="print_only", help="print the torchrun and accelerate lines only"
    )
    group = p.add_argument_group("several machines (run the same line on each, with its own --machine-rank)")
    group.add_argument("--machines", type=positive_int, default=1, metavar="M", help="machines in the job")
    group.add_argument("--machine-rank", type=nonnegative_int, metavar="R",
                       help="this machine: 0 (the main one) … M-1")  # fmt: skip
    group.add_argument("--main-address", metavar="HOST", help="machine 0's address, reachable from the others")
    group.add_argument(
        "--main-port", type=port, metavar="P",
        help=f"a free TCP port on machine 0 (default: {MANY_MACHINES_PORT} on several machines, any free one on one)",
    )  # fmt: skip
    p.add_argument(
        "training", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
        help=f"the training command and its flags: {', '.join(TRAINING_COMMANDS)}",
    )  # fmt: skip


def run_launch(args: argparse.Namespace) -> int:
    """Print both launch lines; unless ``--print``, become the torchrun process (its signals and exit code)."""
    launch = plan_launch(args)
    print(launch.lines(), end="", flush=True)
    if args.print_only:
        return 0
    argv = launch.torchrun()
    os.execve(argv[0], argv, {**os.environ, **launch.environment()})
    return 1  # not reached: execve replaces this process


def plan_launch(args: argparse.Namespace) -> Launch:
    """The ``Launch`` that ``dysen launch``'s flags ask for, on this machine (its GPUs and cores)."""
    command, machines = _checked_command(args.training, args.cpu), _machines(args)
    gpus = 0 if "--cpu" in command else _gpu_count()
    if args.processes is None and not gpus:
        raise LaunchError(
            "no GPU to count (or --cpu): say how many CPU processes with --processes N (one process already uses "
            "every core through its threads; more are for DDP on the CPU, e.g. one per socket)"
        )
    processes = args.processes or gpus
    if gpus and processes > gpus:
        raise LaunchError(
            f"--processes {processes} but {gpus} GPU(s) here: one process per GPU (CUDA_VISIBLE_DEVICES chooses "
            "them); add --cpu to train in CPU processes"
        )
    threads = None if gpus else _threads(processes)
    return Launch(tuple(command), processes, threads=threads, **machines)


def _threads(processes: int) -> int:
    """OMP_NUM_THREADS of each CPU process: the caller's, else this machine's cores shared out."""
    given = os.environ.get("OMP_NUM_THREADS")
    if not given:
        return max(1, _cores() // processes)
    if not given.isdigit() or int(given) < 1:
        raise LaunchError(f"OMP_NUM_THREADS={given!r} is not a positive number of threads: set it so, or unset it")
    return int(given)


def _checked_command(command: list[str], cpu: bool) -> list[str]:
    """The dysen command after ``--`` (with ``--cpu`` added for ``cpu``), parsed once here so that a usage error
    shows once, not once per process."""
    from dysen.cli import build_parser

    command = command[1:] if command[:1] == ["--"] else list(command)
    if not command or command[0] not in TRAINING_COMMANDS:
        given = f"not {command[0]!r}" if command else "none was given"
        raise LaunchError(
            f"dysen launch runs a training command ({', '.join(TRAINING_COMMANDS)}); {given}: e.g. "
            "dysen launch --processes 2 --cpu -- train-vdm --vae runs/ae --out runs/vdm"
        )
    if cpu and "--cpu" not in command:
        command.append("--cpu")
    build_parser().parse_args(command)
    return command


def _machines(args: argparse.Namespace) -> dict[str, object]:
    """The ``Launch`` fields of the machine flags, checked."""
    if args.machines == 1:
        if args.machine_rank is not None or args.main_address is not None:
            raise LaunchError("--machine-rank and --main-address are for several machines: add --machines M")
        return {"main_port": args.main_port}
    if args.machine_rank is None or args.main_address is None:
        raise LaunchError(f"--machines {args.machines} needs --machine-rank (this machine's) and --main-address")
    if args.machine_rank >= args.machines:
        raise LaunchError(f"--machine-rank {args.machine_rank} is not one of 0 … {args.machines - 1}")
    return {"machines": args.machines, "machine_rank": args.machine_rank, "main_address": args.main_address,
            "main_port": args.main_port or MANY_MACHINES_PORT}  # fmt: skip


def _gpu_count() -> int:
    """CUDA devices this process sees (CUDA_VISIBLE_DEVICES applies)."""
    import torch

    return torch.cuda.device_count()


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
