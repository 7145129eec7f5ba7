"""Where and how a run computes (section `runtime`), and the cluster's resources (section `slurm`): knobs that
say nothing about the study's design, shared by every notebook that trains or samples."""
from __future__ import annotations

from dataclasses import dataclass

from lus_utils.config.schema import choice, require
from lus_utils.stages import IDS as STAGES

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass
class RuntimeParams:
    device: str = choice("auto", ("auto", "cpu", "cuda"))  # auto: cuda when available
    threads: int = 1  # CPU threads torch may use in one notebook (fixed, so numbers repeat; 0: every core)
    precision: str = choice("auto", PRECISIONS)  # autocast of training and inference (classifiers, generators' training); auto: bf16 on a GPU or a CPU with native bf16 (AMX, AVX-512 bf16), else fp32 (an AVX2 CPU emulates bf16 ~80x slower); fp16: GPU only
    sampling_precision: str = choice("auto", PRECISIONS)  # generators' denoising network while sampling, the same rule (bf16 measured 1.7x faster at equal KID on an AMX CPU)

    def check(self) -> None:
        require(self.threads >= 0, "threads", "must be >= 0 (0: every core)")
        for key in ("precision", "sampling_precision"):
            require(not (self.device == "cpu" and getattr(self, key) == "fp16"), key,
                    "fp16 runs on a GPU only; on device cpu use bf16 or fp32")


@dataclass
class SlurmParams:
    partition: str = ""  # Slurm partition (empty: the cluster's default)
    account: str = ""  # Slurm account charged (empty: your default)
    gpus_per_node: int = 0  # GPUs per job (stages in cpu_stages get none)
    cpus_per_task: int = 4  # CPU cores per job
    mem_gb: int = 16  # memory per job in GB
    timeout_min: int = 120  # wall-time limit per job in minutes
    array_parallelism: int = 16  # most jobs of one job array running at once
    cpu_stages: list[str] = choice(["01", "06"], STAGES)  # stages whose jobs ask for no GPU

    def check(self) -> None:
        require(self.gpus_per_node >= 0, "gpus_per_node", "must be >= 0")
        require(self.cpus_per_task >= 1 and self.mem_gb >= 1, "cpus_per_task/mem_gb", "must be >= 1")
        require(self.timeout_min >= 1, "timeout_min", "must be >= 1 minute")
        require(self.array_parallelism >= 1, "array_parallelism", "must be >= 1")
        require(len(set(self.cpu_stages)) == len(self.cpu_stages), "cpu_stages", "must not repeat a stage")
