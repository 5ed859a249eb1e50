"""The providers orbiter knows. Adding one: a model module here (its desired.yml model as MODEL),
a runtime module in activities/providers/ (named by the model's RUNTIME), and its name below."""

from importlib import import_module
from typing import Annotated, Union

from pydantic import Field

from .base import Capability, ProviderProblem, ProviderSpec, default_secret_names, machine_name, remote_pins

PROVIDERS = ("local", "static", "gce")

MODELS: tuple[type[ProviderSpec], ...] = tuple(import_module(f"{__name__}.{name}").MODEL for name in PROVIDERS)
Provider = Annotated[Union[MODELS], Field(discriminator="kind")]  # noqa: UP007 - built from the registry

__all__ = ["MODELS", "PROVIDERS", "Capability", "Provider", "ProviderProblem", "ProviderSpec", "default_secret_names",
           "machine_name", "remote_pins"]
