"""orbiter's version commit against a real git remote: only the version line changes, as author
orbiter, on top of whatever the user pushed; a retry commits nothing; a user's change of that line
wins and orbiter's commit is dropped."""

import pytest
from temporalio.testing import ActivityEnvironment

from orbiter.activities.gitupdate import commit_version_update
from orbiter.models.refs import RepoRef
from orbiter.models.updatecheck import CommitVersionInput

from ..conftest import GitRepo, git
from ..support.flows import desired

pytestmark = pytest.mark.slow

MESSAGE = "orbiter: update meta etcd 3.4.23 -> 3.4.25 (policy patch, offered by apt on m1)\n\nbody\n"


def request(repo: GitRepo, old: str = "3.4.23", new: str = "3.4.25") -> CommitVersionInput:
    return CommitVersionInput(repo=RepoRef(url=repo.url), cluster="meta", old=old, new=new, message=MESSAGE)


def test_the_version_line_only_on_top_of_the_users_commits(repo: GitRepo):
    text = desired("lab").replace('version: "3.4.23"', 'version: "3.4.23"  # keep in step with the app')
    repo.push({"desired.yml": text}, "day one")
    env = ActivityEnvironment()
    # orbiter's clone is made now; the user pushes after it, so the commit must land on top of that.
    assert env.run(commit_version_update, request(repo, new="3.4.23")).note == "desired.yml names 3.4.23 already"
    users = repo.push({"desired.yml": text.replace("pollInterval: 1h", "pollInterval: 2h")}, "poll less often")

    done = env.run(commit_version_update, request(repo))
    assert done.commit is not None and done.note is None
    assert git(repo.remote, "rev-parse", f"{done.commit}~1") == users
    assert git(repo.remote, "log", "-1", "--format=%an|%s", done.commit) == f"orbiter|{MESSAGE.splitlines()[0]}"
    after = repo.remote_file("desired.yml") or ""
    assert after == text.replace("pollInterval: 1h", "pollInterval: 2h").replace(
        'version: "3.4.23"  #', 'version: "3.4.25"  #')

    again = env.run(commit_version_update, request(repo))  # a retried activity
    assert (again.commit, again.note) == (None, "desired.yml names 3.4.25 already")
    assert git(repo.remote, "rev-parse", "main") == done.commit


def test_a_users_change_of_the_version_wins(repo: GitRepo):
    text = desired("lab")
    repo.push({"desired.yml": text}, "day one")
    head = repo.push({"desired.yml": text.replace('"3.4.23"', '"3.4.24"')}, "pin 3.4.24 myself")
    result = ActivityEnvironment().run(commit_version_update, request(repo))
    assert result.commit is None
    assert result.note == "dropped: desired.yml now names 3.4.24 for cluster meta, not 3.4.23"
    assert git(repo.remote, "rev-parse", "main") == head
