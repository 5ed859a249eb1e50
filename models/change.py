"""Change control in desired.yml: which planned steps wait for an operator's approval, and when
disruptive steps may touch machines (maintenance windows).

Pure: the ClusterWorkflow evaluates windows against workflow.now(), so a window is a durable
timer that costs nothing and survives any restart; `orbiter plan` evaluates them against the clock.
"""

import hashlib
import json
import re
from datetime import date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, StrictStr, field_validator

from .base import Model, Spec
from .duration import Duration, parse_duration

# The planned steps an approval may be asked for (a step's `gate`).
GateClass = Literal["destroy", "scaleDown", "upgrade", "restore"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class Approval(Spec):
    """`approval: {for: [scaleDown, destroy]}`: plans with such a step wait for `orbiter approve`."""

    for_: list[GateClass] = Field(alias="for", min_length=1)


class Window(Spec):
    """A weekly window: on each of `days`, from `start` (local time in `timezone`) for `duration`."""

    days: list[Day] = Field(default_factory=lambda: list(DAYS), min_length=1)
    start: StrictStr
    duration: Duration
    timezone: StrictStr = "UTC"

    @field_validator("start")
    @classmethod
    def _start(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"{value!r} is not a time of day: write HH:MM, 24-hour (02:00, 22:30)")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}: write an IANA name such as Europe/Zurich or UTC") from None
        return value

    @field_validator("duration")
    @classmethod
    def _length(cls, value: str) -> str:
        if parse_duration(value) > timedelta(days=7):
            raise ValueError(f"a window of {value} is longer than a week: leave maintenance out to allow any time")
        return value

    def openings(self, around: datetime) -> list[tuple[datetime, datetime]]:
        """(start, end) of this window's openings from eight days before `around` to eight after."""
        zone = ZoneInfo(self.timezone)
        local = around.astimezone(zone).date()
        hour, minute = (int(p) for p in self.start.split(":"))
        length = parse_duration(self.duration)
        out = []
        for offset in range(-8, 9):
            day: date = local + timedelta(days=offset)
            if DAYS[day.weekday()] in self.days:
                start = datetime.combine(day, time(hour, minute), tzinfo=zone)
                out.append((start, start + length))
        return out


class Maintenance(Spec):
    """`maintenance: {windows: [...]}`: disruptive steps run only inside one of the windows."""

    windows: list[Window] = Field(min_length=1)


class WindowState(Model):
    open: bool
    until: datetime  # open: when it closes; closed: when the next window opens


def window_state(maintenance: Maintenance, now: datetime) -> WindowState:
    """Whether `now` is inside a window, and the moment that changes. Overlapping windows join."""
    merged: list[tuple[datetime, datetime]] = []
    for start, stop in sorted(span for w in maintenance.windows for span in w.openings(now)):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    for start, stop in merged:
        if start <= now < stop:
            return WindowState(open=True, until=stop)
    # Every window opens at least weekly and openings() looks eight days ahead: there is a next one.
    return WindowState(open=False, until=min(start for start, _ in merged if start > now))


def local_time(maintenance: Maintenance, moment: datetime) -> str:
    """A moment as the operator wrote the first window's zone: "2026-12-05 02:00 CET"."""
    zone = ZoneInfo(maintenance.windows[0].timezone)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


class ChangeControl(Spec):
    """What a cluster's changes wait for: its own settings, else the orb's defaults."""

    approval: Approval | None = None
    maintenance: Maintenance | None = None


def plan_hash(commit: str, steps: list[dict]) -> str:
    """The short id an approval names: a plan of another commit, or other steps, has another."""
    body = json.dumps({"commit": commit, "steps": steps}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:12]


class ApprovalStatus(Model):
    """A plan that asked for approval, in current.yml: what is asked, and who decided."""

    state: Literal["awaiting", "approved", "rejected"]
    commit: str
    plan: str  # plan_hash: what `orbiter approve --plan` names
    steps: list[str]  # the whole plan, as `orbiter plan` prints it
    needs: list[str]  # the steps that asked for it: "remove member e3 (scaleDown)"
    by: str | None = None
    at: str | None = None  # ISO 8601, UTC


class Override(Model):
    """`orbiter apply-now`: the maintenance windows are skipped for one commit, recorded like an approval."""

    commit: str
    by: str
    at: str


class ChangeRecord(Model):
    """One reconcile of a commit: `orbiter history` reads these from current.yml's git history."""

    commit: str
    subject: str = ""
    started: str
    ended: str | None = None
    result: str | None = None  # Ready, Blocked, Destroyed, Rejected, Superseded
    steps: list[str] = []  # the steps that ran, in order
    approved_by: str | None = Field(None, alias="approvedBy")
    error: str | None = None


class DecisionInput(Model):
    """`orbiter approve|reject CLUSTER --plan HASH` (and the Web UI's signal of the same name)."""

    plan: str
    by: str = "unknown"
    reason: str = ""


class ApplyNowInput(Model):
    by: str = "unknown"
    reason: str = ""
