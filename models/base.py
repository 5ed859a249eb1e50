"""Base classes for every model that crosses the Temporal boundary or lives in YAML."""

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Internal data: unknown fields are errors so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Spec(BaseModel):
    """User-facing YAML: camelCase aliases, strict unknown-field checking."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_default=True)
