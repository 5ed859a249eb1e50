"""Delivering a notification to a webhook or Slack: the URL and signing key are secrets, read here
and never named in an error (a Slack webhook URL is itself the credential)."""

import json
import time
import urllib.error
import urllib.request

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orbiter.models.notify import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliverInput,
    sign,
    slack_text,
)
from orbiter.models.secrets import SecretsError

from .secretstore import resolve_secret

TIMEOUT = 10.0


def _secret(input: DeliverInput, name: str) -> bytes:
    try:
        return resolve_secret(input.secrets, name)
    except SecretsError as err:
        raise ApplicationError(f"notify {input.sink.kind}: {err}", type="NotifyRefused", non_retryable=True) from None


@activity.defn
def deliver_notice(input: DeliverInput) -> None:
    """POST one notice. A 2xx is delivered; 408, 429 and 5xx or no answer are retried by the
    workflow's policy; any other 4xx is the sink refusing it for good."""
    sink, notice = input.sink, input.notice
    url = _secret(input, sink.url_secret).decode().strip()
    headers = {"Content-Type": "application/json", "User-Agent": "orbiter", DELIVERY_HEADER: notice.id,
               EVENT_HEADER: notice.event}
    if sink.kind == "slack":
        body = json.dumps({"text": slack_text(notice)}).encode()
    else:
        body = json.dumps(notice.model_dump(mode="json", exclude_none=True), sort_keys=True).encode()
        stamp = str(int(time.time()))
        key_name = sink.signing_key_secret
        assert key_name is not None
        headers[TIMESTAMP_HEADER] = stamp
        headers[SIGNATURE_HEADER] = sign(_secret(input, key_name), stamp, body)
    where = f"{sink.kind} sink {sink.url_secret}"  # the secret's name, never the URL
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310 - the operator's URL
            answer.read()
    except urllib.error.HTTPError as err:
        if 400 <= err.code < 500 and err.code not in (408, 429):
            raise ApplicationError(f"{where} refused {notice.event} with HTTP {err.code}: check the sink",
                                   type="NotifyRefused", non_retryable=True) from None
        raise ApplicationError(f"{where} answered HTTP {err.code}; retrying", type="NotifyUnavailable") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise ApplicationError(f"{where} cannot be reached ({reason}); retrying", type="NotifyUnavailable") from None
    except ValueError:
        raise ApplicationError(f"{where}: secret {sink.url_secret} is not a URL: set it with orbiter secret set",
                               type="NotifyRefused", non_retryable=True) from None
