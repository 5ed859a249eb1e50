"""The worker's concurrency limits are settings: its environment sets them, a wrong value is one line."""

import pytest

from orbiter.worker.settings import DEFAULTS, SettingError, worker_settings


def test_defaults_without_settings(monkeypatch: pytest.MonkeyPatch):
    for name in ("ORBITER_ACTIVITY_THREADS", "ORBITER_WORKFLOW_TASKS", "ORBITER_WORKFLOW_CACHE"):
        monkeypatch.delenv(name, raising=False)
    assert worker_settings() == DEFAULTS
    # The cache holds a thousand node agents with their clusters: none replays its history per round.
    assert DEFAULTS.workflow_cache > 1000


def test_the_environment_sets_each_limit(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("ORBITER_ACTIVITY_THREADS", "16")
    monkeypatch.setenv("ORBITER_WORKFLOW_TASKS", "8")
    monkeypatch.setenv("ORBITER_WORKFLOW_CACHE", "3000")
    settings = worker_settings()
    assert (settings.activity_threads, settings.workflow_tasks, settings.workflow_cache) == (16, 8, 3000)


@pytest.mark.parametrize("value", ["0", "-3", "many", "1.5"])
def test_a_value_that_is_not_a_positive_number_is_named(monkeypatch: pytest.MonkeyPatch, value: str):
    monkeypatch.setenv("ORBITER_WORKFLOW_CACHE", value)
    with pytest.raises(SettingError) as err:
        worker_settings()
    assert str(err.value) == (f"ORBITER_WORKFLOW_CACHE={value!r} is not a positive whole number: set it to one,"
                              " or unset it (default 5000)")
