"""Provider runtimes, found from their desired.yml models (models/providers)."""

from importlib import import_module

from orbiter.models.providers import MODELS, ProviderSpec
from orbiter.models.refs import SecretsRef

from .base import ProviderError, ProviderRuntime


def runtime_class(spec: type[ProviderSpec] | ProviderSpec) -> type[ProviderRuntime]:
    module, _, name = spec.RUNTIME.partition(":")
    return getattr(import_module(module), name)


def runtime_for(name: str, spec: ProviderSpec, secrets: SecretsRef | None = None) -> ProviderRuntime:
    return runtime_class(spec)(name, spec, secrets)


def runtime_classes() -> list[type[ProviderRuntime]]:
    return [runtime_class(model) for model in MODELS]


__all__ = ["ProviderError", "ProviderRuntime", "runtime_classes", "runtime_for"]
