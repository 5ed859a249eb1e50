"""The GCE provider at run time: not able to create instances yet (desired.yml accepts it)."""

from temporalio.exceptions import ApplicationError

from orbiter.models.machines import Machine
from orbiter.models.provision import AcquireMachinesInput, ReleaseMachineInput

from .base import Progress, ProviderRuntime


class GceRuntime(ProviderRuntime):
    def acquire(self, input: AcquireMachinesInput, progress: Progress) -> list[Machine]:
        raise ApplicationError(f"provider {self.name}: creating GCE machines is not supported yet",
                               type="Unsupported", non_retryable=True)

    def release(self, input: ReleaseMachineInput) -> None:
        raise ApplicationError(f"provider {self.name}: deleting GCE machines is not supported yet",
                               type="Unsupported", non_retryable=True)
