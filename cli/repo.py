"""init and plan: commands that work on a checkout, with no Temporal and no side effects."""

import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from orbiter.models.change import ChangeControl, local_time, window_state
from orbiter.models.current import OrbStatus
from orbiter.models.desired import change_control
from orbiter.models.kinds import PlannedStep
from orbiter.models.load import DesiredStateError, load_desired
from orbiter.models.names import NAME_PATTERN
from orbiter.workflows.orbplan import OrbPlan, plan_orb

from .common import Output, OutputOpt, RepoDirOpt, console, fail, print_json

EXAMPLE = Path(__file__).parent / "templates" / "desired.yml"
NOTE = """# Secrets

Secrets live encrypted in `secrets.yml` (AES-256-GCM under a key derived from the master key).
Create a master key once per machine that runs orbiter:

    sudo mkdir -p /etc/orbiter && head -c 32 /dev/urandom | base64 | sudo tee /etc/orbiter/masterkey >/dev/null
    sudo chmod 600 /etc/orbiter/masterkey

Add a secret from stdin, for example the bootstrap key of a static provider `dc1`:

    orbiter secret add dc1_bootstrapkey < ~/.ssh/id_ed25519

Then commit desired.yml and secrets.yml, push, and let orbiter watch the repository:

    orbiter takeoff --repo <url>
"""


def orb_name(directory: Path) -> str:
    """An orb name from a directory name: lowercase letters, digits and '-', at most 32."""
    name = re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", directory.resolve().name.lower())).strip("-")[:32].strip("-")
    return name or "lab"


def init(
    directory: Annotated[Path, typer.Argument(help="new repository directory")],
    name: Annotated[str | None, typer.Option("--name", help="the orb's name [default: the directory's name]")]
    = None,
) -> None:
    """Create a repository with an example desired.yml and a note on adding secrets.

    The orb is named after the directory unless --name says otherwise: orb names must differ
    between the repositories one Temporal server serves (workflow ids and machines carry them)."""
    if (directory / "desired.yml").exists():
        fail(f"{directory / 'desired.yml'} exists already: init only creates new repositories")
    orb = name or orb_name(directory)
    if not re.fullmatch(NAME_PATTERN, orb):
        fail(f"--name {orb!r} is not a name: lowercase letters, digits and '-', at most 32 characters")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "desired.yml").write_text(EXAMPLE.read_text().replace("  name: lab\n", f"  name: {orb}\n", 1))
    (directory / "SECRETS.md").write_text(NOTE)
    if not (directory / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main", str(directory)], check=True)
    console.print(f"created {directory}/desired.yml (orb {orb}) and SECRETS.md; edit, commit, push, then"
                  " `orbiter takeoff`", highlight=False)


def _committed_desired(repo_dir: Path, commit: str) -> str | None:
    """desired.yml as it was at `commit` (what a cluster last applied), if the checkout has it."""
    proc = subprocess.run(["git", "-C", str(repo_dir), "show", f"{commit}:desired.yml"],
                          capture_output=True, text=True, check=False)
    return proc.stdout if proc.returncode == 0 else None


def waits_for(control: ChangeControl | None, step: PlannedStep) -> str:
    """What a step will wait for under the cluster's change control, as of now."""
    if control is None:
        return ""
    waits = []
    if control.approval is not None and step.gate in control.approval.for_:
        waits.append(f"approval ({step.gate})")
    if control.maintenance is not None and step.disruptive:
        state = window_state(control.maintenance, datetime.now(UTC))
        opens = "open now" if state.open else f"opens {local_time(control.maintenance, state.until)}"
        waits.append(f"window ({opens})")
    return ", ".join(waits)


def plan(repo_dir: RepoDirOpt = Path("."), output: OutputOpt = Output.table) -> None:
    """The steps orbiter would run for DIR's desired.yml against its current.yml, in the words the
    cluster then reports as its step. No side effects. Exit 0: nothing changes; 2: changes; 1: an error."""
    desired = repo_dir / "desired.yml"
    if not desired.exists():
        fail(f"{desired} does not exist")
    try:
        orb = load_desired(desired.read_text(), str(desired))
    except DesiredStateError as err:
        fail(str(err))
    current_file = repo_dir / "current.yml"
    try:
        current = OrbStatus.from_yaml(current_file.read_text() if current_file.exists() else None)
    except Exception as err:  # noqa: BLE001 - any parse failure is the same user error
        fail(f"{current_file} is not a valid current.yml: {str(err).splitlines()[0]}")
    result: OrbPlan = plan_orb(orb, current, lambda commit: _committed_desired(repo_dir, commit))
    if output == Output.json:
        print_json(result.model_dump(mode="json"))
    else:
        table = Table("cluster", "step", "what it does", "changes", "waits for")
        for c in result.clusters:
            if c.note:
                table.add_row(c.cluster, "", c.note, "", "")
            control = change_control(orb, orb.spec.clusters[c.cluster]) if c.cluster in orb.spec.clusters else None
            for s in c.steps:
                table.add_row(c.cluster, s.name, s.description, "yes" if s.changes else "", waits_for(control, s))
        console.print(table)
        console.print("the orb would change" if result.changes else "nothing to change: the orb is as desired",
                      highlight=False)
    raise typer.Exit(1 if result.refused else 2 if result.changes else 0)
