"""The GCE provider's runtime: instances, firewall rules and a load balancer in a Compute Engine project."""

from .runtime import GceRuntime

__all__ = ["GceRuntime"]
