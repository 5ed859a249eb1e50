"""Notifications: where orbiter tells people what happened (desired.yml `notify`), and what it says.

A message is made once per event in a workflow, with a delivery id derived from the workflow and
the event's number, and delivered by an activity that retries until the sink takes it: a sink
that answers 500 for an hour gets the message when it recovers, once (its id lets a receiver drop
a repeat that a lost answer caused).
"""

import hashlib
import hmac
from typing import Literal

from pydantic import Field, StrictStr, model_validator

from .base import Model, Spec
from .refs import SecretsRef

Event = Literal["Ready", "Blocked", "AwaitingApproval", "Destroyed", "Rejected", "Drift", "Remediation", "Backup"]
EVENTS: tuple[Event, ...] = ("Ready", "Blocked", "AwaitingApproval", "Destroyed", "Rejected", "Drift", "Remediation",
                             "Backup")
SIGNATURE_HEADER = "X-Orbiter-Signature"
TIMESTAMP_HEADER = "X-Orbiter-Timestamp"
DELIVERY_HEADER = "X-Orbiter-Delivery"
EVENT_HEADER = "X-Orbiter-Event"


class Sink(Spec):
    """`{kind: webhook, urlSecret: NAME, events: [...]}` or `{kind: slack, urlSecret: NAME}`. The URL
    is a secret (Slack's incoming-webhook URLs are credentials); a webhook's payloads are signed
    with `keySecret` (default: the URL secret's name with `_key`)."""

    kind: Literal["webhook", "slack"]
    url_secret: StrictStr = Field(alias="urlSecret")
    key_secret: StrictStr | None = Field(None, alias="keySecret")
    events: list[Event] = Field(default_factory=lambda: list(EVENTS), min_length=1)

    @model_validator(mode="after")
    def _key(self) -> "Sink":
        if self.kind == "slack" and self.key_secret is not None:
            raise ValueError("keySecret: Slack messages are not signed (the URL is the credential); remove it")
        return self

    @property
    def signing_key_secret(self) -> str | None:
        if self.kind != "webhook":
            return None
        return self.key_secret or f"{self.url_secret}_key"


class Notice(Model):
    """One event, as every sink gets it."""

    id: str  # the delivery id: the same for every retry of this event to this sink
    event: Event
    orb: str
    cluster: str | None = None
    phase: str | None = None
    commit: str | None = None
    message: str  # one line: what changed, at which commit, and why
    time: str  # ISO 8601, UTC, when it happened (workflow time)


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<body>`: the timestamp is signed, so a
    receiver that refuses old timestamps cannot be fed a recorded delivery again."""
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def slack_text(notice: Notice) -> str:
    where = f"{notice.orb}/{notice.cluster}" if notice.cluster else notice.orb
    commit = f" at {notice.commit[:12]}" if notice.commit else ""
    return f"*{where}* {notice.event}{commit}: {notice.message}"


class DeliverInput(Model):
    sink: Sink
    notice: Notice
    secrets: SecretsRef
