"""redis-cli over SSH on a member machine: the cluster's Redis and Sentinels asked from there.

The machine holds what redis-cli needs: the member certificate and the password (auth.conf, the
node agent's secret file). The scripts read the password on the machine into REDISCLI_AUTH and
feed commands that carry it on stdin, so it is in no activity input, result, command line or
message. Every member is asked in parallel, so one that is down costs one timeout, not several.
"""

import shlex
from collections.abc import Iterator
from contextlib import contextmanager

from orbiter.activities.progress import heartbeating
from orbiter.activities.remote import Remote
from orbiter.models.errors import one_line
from orbiter.models.kinds.redis.messages import (
    AUTH_CONF,
    CA_FILE,
    CERT_FILE,
    KEY_FILE,
    REDIS_PORT,
    SENTINEL_PORT,
    MemberAddress,
    RedisStatus,
    RedisTarget,
)

from .observe import MARK, sections, status

CALL_TIMEOUT = 3  # seconds for one redis-cli call; a member that is down answers nothing
SCRIPT_TIMEOUT = 60.0


def _detail(stdout: str, stderr: str) -> str:
    return one_line(stderr or stdout)


class RedisCli:
    """redis-cli on the first member machine of a target that answers; one session for all calls."""

    def __init__(self, target: RedisTarget) -> None:
        self.target = target
        self.remote = Remote(f"redis cluster {target.cluster}", target.via, target.secrets, detail=_detail)

    def where(self) -> str:
        return self.remote.where()

    def prelude(self) -> str:
        tls = f"--tls --cacert {CA_FILE} --cert {CERT_FILE} --key {KEY_FILE} " if self.target.tls else ""
        return "\n".join([
            "set -u",
            f"REDISCLI_AUTH=$(sed -n 's/^requirepass //p' {AUTH_CONF} | head -n 1)",
            "export REDISCLI_AUTH",
            f"rc() {{ h=$1; p=$2; shift 2; timeout {CALL_TIMEOUT} redis-cli --no-auth-warning {tls}"
            '-h "$h" -p "$p" "$@"; }',
            "",
        ])

    def run(self, body: str, what: str, error_type: str = "RedisError") -> str:
        return self.remote.run(self.prelude() + body, what, error_type, timeout=SCRIPT_TIMEOUT)

    def status(self, member: str | None = None) -> RedisStatus:
        """Every member's Redis (twice: see observe.py) and Sentinel, in one round trip."""
        q = shlex.quote
        master = q(self.target.master)
        asks = (f"printf 'SENTINEL MASTER %s\\nSENTINEL REPLICAS %s\\nSENTINEL SENTINELS %s\\n'"
                f" {master} {master} {master}")
        lines = ['d=$(mktemp -d)', "trap 'rm -rf \"$d\"' EXIT"]
        for i, m in enumerate(self.target.members):
            lines.append(f"rc {q(m.ip)} {REDIS_PORT} INFO replication server > $d/a.{i} 2>&1 &")
            lines.append(f"{asks} | rc {q(m.ip)} {SENTINEL_PORT} --json > $d/s.{i} 2>&1 &")
        lines.append("wait")
        for i, m in enumerate(self.target.members):  # a member that did not answer is not asked again
            lines.append(f"if grep -q '^role:' $d/a.{i}; then rc {q(m.ip)} {REDIS_PORT} INFO replication server"
                         f" > $d/b.{i} 2>&1 & else : > $d/b.{i}; fi")
        lines.append("wait")
        for i in range(len(self.target.members)):
            lines += [f"echo '{MARK}{part} {i}'; cat $d/{part}.{i}" for part in ("a", "b", "s")]
        with heartbeating("asking every member"):  # a session to a machine that died hangs a while
            out = self.run("\n".join(lines) + "\n", "status")
        return status(self.target.members, sections(out), member)

    def failover(self, old: MemberAddress, sentinel: MemberAddress, pause_ms: int, seconds: float) -> str:
        """One script, so the steps follow each other within milliseconds: pause writes on the
        primary, wait until every replica has all it wrote, ask Sentinel to fail over, and once a
        replica runs as primary make the old one its replica and let the writes go (they meet a
        replica: READONLY). Prints the new primary's address. The pause ends by itself after
        `pause_ms` whatever happens; kept below Sentinel's down-after, it never makes Sentinel
        think the old primary is down (its PUBLISH waits too)."""
        q = shlex.quote
        others = " ".join(q(m.ip) for m in self.target.members if m.ip != old.ip)
        ip, master = q(old.ip), q(self.target.master)
        body = rf"""
        now() {{ date +%s.%N | cut -c1-14; }}
        offset() {{ rc "$1" {REDIS_PORT} INFO replication | tr -d '\r' | sed -n "s/^$2://p"; }}
        trap 'rc {ip} {REDIS_PORT} CLIENT UNPAUSE >/dev/null 2>&1' EXIT
        rc {ip} {REDIS_PORT} CLIENT PAUSE {pause_ms} WRITE >/dev/null
        paused=$(now)
        want=$(offset {ip} master_repl_offset)
        for other in {others}; do
          n=0
          until [ "$(offset "$other" slave_repl_offset)" -ge "${{want:-0}}" ] 2>/dev/null || [ $n -ge 50 ]; do
            n=$((n + 1)); sleep 0.02
          done
        done
        caught=$(now)
        out=$(printf 'SENTINEL FAILOVER %s\n' {master} | rc {q(sentinel.ip)} {SENTINEL_PORT})
        case "$out" in *INPROG*|OK) ;; *) echo "$out"; exit 3;; esac
        end=$(( $(date +%s) + {int(seconds)} ))
        while [ "$(date +%s)" -lt "$end" ]; do
          for other in {others}; do
            if [ "$(rc "$other" {REDIS_PORT} ROLE | head -n 1 | tr -d '\r')" = master ]; then
              printf 'REPLICAOF %s {REDIS_PORT}\nCONFIG REWRITE\n' "$other" | rc {ip} {REDIS_PORT} >/dev/null
              echo "$other $paused $caught $(now)"
              exit 0
            fi
          done
          sleep 0.05
        done
        echo "no replica was promoted within {int(seconds)}s"
        exit 4
        """
        return self.run("\n".join(line.strip() for line in body.splitlines()) + "\n", "failover").strip()

    def redis(self, member: MemberAddress, *commands: str) -> str:
        """Commands (one a line) for a member's Redis; a reply that is an error fails the call."""
        return self._ask(member, REDIS_PORT, commands)

    def sentinel(self, member: MemberAddress, *commands: str) -> str:
        return self._ask(member, SENTINEL_PORT, commands)

    def _ask(self, member: MemberAddress, port: int, commands: tuple[str, ...]) -> str:
        # A command that carries the password names it $REDISCLI_AUTH: printf puts it on stdin.
        fmt = "".join(c.replace("%", "%%").replace("$REDISCLI_AUTH", "%s") + "\\n" for c in commands)
        args = " ".join('"$REDISCLI_AUTH"' for c in commands for _ in range(c.count("$REDISCLI_AUTH")))
        body = (f"out=$(printf '{fmt}' {args} | rc {shlex.quote(member.ip)} {port})\n"
                'status=$?\nprintf "%s\\n" "$out"\n'
                'case "$out" in *ERR*|*NOGOODSLAVE*|*INPROG*|*NOAUTH*|*WRONGPASS*) exit 3;; esac\nexit $status\n')
        what = f"{'sentinel' if port == SENTINEL_PORT else 'redis'} on {member.name}: {commands[0].split()[0]}"
        return self.run(body, what)


@contextmanager
def redis_cli(target: RedisTarget) -> Iterator[RedisCli]:
    cli = RedisCli(target)
    try:
        yield cli
    finally:
        cli.remote.close()
