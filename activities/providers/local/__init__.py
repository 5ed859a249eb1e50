"""The local provider's runtime: machines booted with systemd-nspawn on the worker's host."""

from .machines import LocalMachines, LocalProviderError
from .paths import state_dir
from .runtime import LocalRuntime

__all__ = ["LocalMachines", "LocalProviderError", "LocalRuntime", "state_dir"]
