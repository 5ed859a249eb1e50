"""Secret values for activities: decrypted in the worker, never passed through Temporal."""

from orbiter.models.refs import SecretsRef
from orbiter.models.secrets import read_secret_with_extra
from orbiter.worker.masterkey import load_master_key

from .repo import read_file


def resolve_secret(ref: SecretsRef, name: str) -> bytes:
    text = None if name in ref.extra else read_file(ref.repo, ref.commit, "secrets.yml")
    return read_secret_with_extra(load_master_key(), text, name, ref.extra)
