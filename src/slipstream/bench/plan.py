"""A whole run's settings in one picklable value, handed to every worker process."""

from __future__ import annotations

from dataclasses import dataclass, field

from slipstream.bench.schedule import ScheduleConfig
from slipstream.bench.workload import WorkloadConfig


@dataclass(frozen=True)
class RunPlan:
    url: str
    workload: WorkloadConfig
    schedule: ScheduleConfig
    requests: int | None = None
    duration: float | None = None
    api_key: str | None = None
    timeout: float = 600.0
    workers: int = 1  # 0 = run in this process (no live progress; used by tests and benches)
    warmup_requests: int = 0
    labels: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.requests is None and self.duration is None:
            raise ValueError("give --requests N or --duration S")
        if self.requests is not None and self.requests < 1:
            raise ValueError(f"--requests must be >= 1, got {self.requests}")
        if self.duration is not None and not self.duration > 0:
            raise ValueError(f"--duration must be > 0 s, got {self.duration:g}")
        if not self.timeout > 0:
            raise ValueError(f"--timeout must be > 0 s, got {self.timeout:g}")

    @property
    def path(self) -> str:
        return "/chat/completions" if self.workload.endpoint == "chat" else "/completions"
