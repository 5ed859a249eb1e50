"""What one machine should have: plain data any cluster kind produces and the agent converges."""

from .base import Model


class Package(Model):
    name: str
    version: str  # exact apt version, e.g. "3.4.23-4+b6"
    hold: bool = False


class FileSpec(Model):
    path: str
    content: str
    mode: str = "0644"
    owner: str = "root"
    group: str = "root"
    # A secret's name; the activity fills the content from it so the value never enters history.
    content_secret: str | None = None


class UnitSpec(Model):
    name: str  # e.g. "etcd.service"
    content: str | None = None  # None: the unit comes from a package
    enabled: bool = True
    active: bool = True
    # Paths of files whose change restarts this unit.
    restart_on: list[str] = []


class AptSource(Model):
    """An apt repository the machine installs packages from."""

    name: str
    line: str  # "deb [trusted=yes] http://10.77.0.1:8079/ ./"


class NodeSpec(Model):
    hostname: str
    apt_sources: list[AptSource] = []
    packages: list[Package] = []
    files: list[FileSpec] = []
    units: list[UnitSpec] = []
    sysctls: dict[str, str] = {}
    kernel_modules: list[str] = []
    swap_off: bool = False
    # Which orb and cluster own the machine (models/claims.py): written if absent, and a claim of
    # another orb stops the agent before it changes anything.
    claim: str | None = None


class UnitState(Model):
    name: str
    enabled: bool
    active: bool


class NodeObserved(Model):
    """One round trip's view of a machine."""

    hostname: str
    packages: dict[str, str] = {}  # name -> installed version
    held: list[str] = []
    files: dict[str, str | None] = {}  # path -> sha256 of content, None when absent
    file_modes: dict[str, str] = {}  # path -> "0644 root root"
    units: dict[str, UnitState] = {}
    sysctls: dict[str, str] = {}
    kernel_modules: list[str] = []
    swap_active: bool = False
    apt_sources: dict[str, str] = {}  # name -> line
    claim: str | None = None  # the claim file's content, when the spec has a claim
    upgradable: list[str] | None = None  # OS updates apt offers: "name=version[ (security)]" (agent/osupdates.py)
    reboot_required: bool | None = None  # /var/run/reboot-required exists


class Change(Model):
    """One step the agent takes; `drift` marks a change undoing something done by hand."""

    kind: str  # hostname, apt_source, package, file, unit, sysctl, module, swap, restart
    target: str
    detail: str = ""
