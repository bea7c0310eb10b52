"""A real PostgreSQL server for the test suite.

Which server:

* ``STATEWRIGHT_TEST_DATABASE_URL`` set (e.g. ``postgresql://postgres@127.0.0.1:5432/test``):
  that server. Its database is only used for admin statements; every test gets its own database.
* otherwise: a throwaway cluster made from the local PostgreSQL binaries (``pg_config --bindir``,
  else the newest ``/usr/lib/postgresql/*/bin``, else ``PATH``) in a temp dir under ``/tmp``, on a
  free port, listening on 127.0.0.1 only, trust auth, no durability (``fsync=off``,
  ``synchronous_commit=off``, ``full_page_writes=off``). It is stopped and deleted at the end of
  the session, also after failures, Ctrl-C and SIGTERM; clusters left behind by a killed session
  are reaped by the next one. As root, the binaries run as the ``postgres`` OS user (``runuser``).
* neither possible (no binaries, or no ``asyncpg``): the tests that need Postgres are skipped
  locally, and fail in CI (``CI=true``), so a missing server never passes silently.

Fixtures (registered by ``tests/conftest.py``):

* ``postgres_server`` (session): a :class:`PostgresServer`. For the throwaway cluster
  (``managed``), ``stop()``, ``start()`` and ``restart()`` take it down and up again on the same
  port and data directory (crash tests); they refuse an external server.
* ``postgres_database`` (function): the asyncpg URL of a fresh, empty database, dropped after.
* ``postgres_template_factory`` (session): ``make_template(name, setup) -> str``; builds a
  template database once per session (``setup(url)`` is a sync callable that gets its asyncpg URL)
  and returns the template's real database name.
* ``postgres_clone`` (function): ``clone(template) -> url``; each call clones a template with
  ``CREATE DATABASE ... TEMPLATE ...``; all clones are dropped after the test.

Schema fixtures combine the last two, e.g.::

    @pytest.fixture(scope="session")
    def schema_template(postgres_template_factory: TemplateFactory) -> str:
        return postgres_template_factory("schema", build_schema)

    @pytest.fixture
    def db_url(postgres_clone: CloneFactory, schema_template: str) -> str:
        return postgres_clone(schema_template)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import errno
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import types
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn, Protocol, TypeVar
from urllib.parse import quote, unquote, urlsplit

import pytest

URL_ENV = "STATEWRIGHT_TEST_DATABASE_URL"
BINDIR_ENV = "STATEWRIGHT_PG_BINDIR"  # optional override of the binary discovery
TMP_PARENT = "/tmp"  # reachable by the postgres OS user, unlike e.g. /root
TMP_PREFIX = "statewright-pg-"
OWNER_FILE = "owner.pid"
SERVER_BINARIES = ("initdb", "pg_ctl", "postgres")
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}
START_ATTEMPTS = 5  # the free port can be taken between picking and binding it
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,39}")
T = TypeVar("T")


class TemplateFactory(Protocol):
    def __call__(self, name: str, setup: Callable[[str], None]) -> str: ...


class CloneFactory(Protocol):
    def __call__(self, template: str) -> str: ...


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> NoReturn:
    """Skip locally; fail in CI, where Postgres is installed and a missing one is a bug."""
    if in_ci():
        pytest.fail(f"PostgreSQL needed but unavailable in CI: {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL unavailable: {reason}")


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin: compare "9.6" < "10" < "15" numerically.
    parts = re.findall(r"\d+", path.parent.name)
    return tuple(int(p) for p in parts) if parts else (-1,)


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in SERVER_BINARIES)


def find_bindir(lib_root: Path = Path("/usr/lib/postgresql")) -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None when there is none."""
    override = os.environ.get(BINDIR_ENV)
    if override:
        return Path(override) if _has_server(Path(override)) else None
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            ).stdout.strip()
            if out:
                candidates.append(Path(out))
    candidates += sorted(lib_root.glob("*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    return next((c for c in candidates if _has_server(c)), None)


def _run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when this thread runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@dataclass
class PostgresServer:
    """Where the test server is, plus admin helpers (each opens a short asyncpg connection)."""

    host: str
    port: int
    user: str
    password: str | None = None
    admin_database: str = "postgres"
    managed: bool = False  # True: the throwaway cluster started by this session
    query: str = ""
    _server_version: int | None = field(default=None, repr=False)
    _cluster: Cluster | None = field(default=None, repr=False, compare=False)

    def url(self, database: str, driver: str | None = "asyncpg") -> str:
        """``postgresql+asyncpg://user@host:port/database``; plain ``postgresql://`` for None."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        tail = f"?{self.query}" if self.query else ""
        return f"{scheme}://{auth}@{host}:{self.port}/{quote(database, safe='')}{tail}"

    def dsn(self, database: str) -> str:
        """A libpq-style URL for asyncpg.connect() / psql."""
        return self.url(database, driver=None)

    @property
    def admin_dsn(self) -> str:
        return self.dsn(self.admin_database)

    # --- admin statements -------------------------------------------------------------------

    async def _execute(self, *statements: str, database: str | None = None) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.dsn(database or self.admin_database), timeout=30)
        try:
            for statement in statements:
                await conn.execute(statement)
        finally:
            await conn.close()

    def execute(self, *statements: str, database: str | None = None) -> None:
        """Run statements one by one in autocommit (CREATE/DROP DATABASE need that)."""
        _run_sync(self._execute(*statements, database=database))

    def server_version(self) -> int:
        """``server_version_num``, e.g. 150004."""
        if self._server_version is None:

            async def fetch() -> int:
                import asyncpg

                conn = await asyncpg.connect(self.admin_dsn, timeout=30)
                try:
                    return int(await conn.fetchval("show server_version_num"))
                finally:
                    await conn.close()

            self._server_version = _run_sync(fetch())
        return self._server_version

    def create_database(self, name: str, template: str = "template0") -> str:
        """Create database ``name`` from ``template``; returns its asyncpg URL."""
        self.execute(f"CREATE DATABASE {_quote_ident(name)} TEMPLATE {_quote_ident(template)}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting its sessions first."""
        force = " WITH (FORCE)" if self.server_version() >= 130000 else ""
        statements = [
            # A template can't be dropped, and must not accept new sessions meanwhile.
            f"ALTER DATABASE {_quote_ident(name)} WITH IS_TEMPLATE false ALLOW_CONNECTIONS false",
            f"DROP DATABASE IF EXISTS {_quote_ident(name)}{force}",
        ]
        if not force:
            statements.insert(1, _terminate_sql(name))
        if not self._database_exists(name):
            return
        self.execute(*statements)

    def _database_exists(self, name: str) -> bool:
        return name in self.databases()

    def databases(self) -> set[str]:
        async def fetch() -> set[str]:
            import asyncpg

            conn = await asyncpg.connect(self.admin_dsn, timeout=30)
            try:
                rows = await conn.fetch("select datname from pg_database")
                return {r["datname"] for r in rows}
            finally:
                await conn.close()

        return _run_sync(fetch())

    def mark_template(self, name: str) -> None:
        """Make ``name`` a template nobody can connect to, so cloning can't be blocked."""
        self.execute(
            f"ALTER DATABASE {_quote_ident(name)} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
            _terminate_sql(name),
        )

    # --- stop and start (the throwaway cluster only) -----------------------------------------

    def _own_cluster(self) -> Cluster:
        """The throwaway cluster's data directory and binaries (found once, while it runs)."""
        if not self.managed:
            raise RuntimeError(
                f"only the throwaway cluster can be stopped and started, not a server named by "
                f"{URL_ENV} (other users may depend on it)"
            )
        if self._cluster is None:
            bindir = find_bindir()
            if bindir is None:
                raise RuntimeError("no PostgreSQL server binaries found")

            async def fetch() -> str:
                import asyncpg

                conn = await asyncpg.connect(self.admin_dsn, timeout=30)
                try:
                    return str(await conn.fetchval("show data_directory"))
                finally:
                    await conn.close()

            cluster = Cluster(bindir, root=Path(_run_sync(fetch())).parent)
            cluster.port = self.port
            self._cluster = cluster
        return self._cluster

    def log_path(self) -> Path:
        """The throwaway cluster's server log (managed servers only)."""
        return self._own_cluster().log

    def is_running(self) -> bool:
        """Whether the throwaway cluster's postmaster runs (managed servers only)."""
        cluster = self._own_cluster()
        pid = cluster.postmaster_pid()
        return pid is not None and _pid_alive(pid)

    def stop(self, mode: str = "fast") -> None:
        """Stop the throwaway cluster (``pg_ctl stop -m mode``), keeping its data and port.

        Sessions are disconnected (``fast``: their transactions roll back). Only for the managed
        cluster: an external server (``STATEWRIGHT_TEST_DATABASE_URL``) raises RuntimeError.
        """
        cluster = self._own_cluster()
        with _signals_deferred():
            done = cluster._run(
                "pg_ctl",
                "stop",
                "--pgdata",
                str(cluster.data),
                "--mode",
                mode,
                "--wait",
                "--timeout",
                str(STOP_TIMEOUT_S),
                timeout=STOP_TIMEOUT_S + 10,
            )
        if done.returncode != 0 and self.is_running():
            raise RuntimeError(
                f"pg_ctl stop failed ({done.returncode}):\n{done.stdout}{done.stderr}"
            )

    def start(self) -> None:
        """Start the stopped throwaway cluster again, on the same port and data directory.

        Returns once it accepts connections; a no-op when it runs. Managed servers only.
        """
        cluster = self._own_cluster()
        if self.is_running():
            return
        options = ["-p", str(self.port), "-k", str(cluster.root)]
        for key, value in SERVER_SETTINGS.items():
            options += ["-c", f"{key}={value}"]
        with _signals_deferred():
            started = cluster._run(
                "pg_ctl",
                "start",
                "--pgdata",
                str(cluster.data),
                "--log",
                str(cluster.log),
                "--wait",
                "--timeout",
                str(START_TIMEOUT_S),
                "-o",
                shlex.join(options),  # pg_ctl hands these to a shell
                timeout=START_TIMEOUT_S + 10,
            )
        if started.returncode != 0:
            log = cluster.log.read_text(errors="replace") if cluster.log.exists() else ""
            raise RuntimeError(
                f"pg_ctl start failed ({started.returncode}):\n{started.stdout}{started.stderr}"
                f"\n--- server log ---\n{log[-4000:]}"
            )

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop the throwaway cluster, stay down ``down_seconds``, start it again."""
        self.stop()
        time.sleep(down_seconds)
        self.start()


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _terminate_sql(name: str) -> str:
    literal = "'" + name.replace("'", "''") + "'"
    return (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = {literal} AND pid <> pg_backend_pid()"
    )


def server_from_url(url: str) -> PostgresServer:
    parts = urlsplit(url)
    if not re.fullmatch(r"postgres(ql)?(\+\w+)?", parts.scheme):
        raise ValueError(f"{URL_ENV}: not a postgresql:// URL: {parts.scheme}://...")
    return PostgresServer(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        user=unquote(parts.username) if parts.username else "postgres",
        password=unquote(parts.password) if parts.password is not None else None,
        admin_database=unquote(parts.path.lstrip("/")) or "postgres",
        query=parts.query,
    )


# --- the throwaway cluster ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as e:
        return e.errno == errno.EPERM
    return True


def _postmasters(data: Path) -> list[int]:
    """Pids of processes running ``postgres -D data`` (also one whose postmaster.pid is gone)."""
    needle = [b"-D", str(data).encode()]
    found: list[int] = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            argv
            and argv[0].endswith(b"postgres")
            and any(argv[i : i + 2] == needle for i in range(len(argv) - 1))
        ):
            found.append(int(proc.name))
    return found


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while starting or stopping the cluster, then raise KeyboardInterrupt.

    Interrupting ``pg_ctl`` half-way would leave a postmaster that nothing stops.
    """
    caught: list[int] = []

    def record(signum: int, frame: types.FrameType | None) -> None:
        caught.append(signum)

    try:
        previous = {sig: signal.signal(sig, record) for sig in (signal.SIGINT, signal.SIGTERM)}
    except ValueError:  # not the main thread: signals can't be handled here anyway
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if caught:
        raise KeyboardInterrupt(f"signal {caught[0]}")


class Cluster:
    """An initdb'd data directory plus a running postmaster, owned by this process."""

    def __init__(self, bindir: Path, root: Path | None = None) -> None:
        """A new temp dir owned by this process, or (``root`` given) an existing one."""
        self.bindir = bindir
        self.as_postgres = _is_root()
        self.port = 0
        if root is not None:
            self.root = root
        else:
            self.root = Path(tempfile.mkdtemp(prefix=TMP_PREFIX, dir=TMP_PARENT))
            (self.root / OWNER_FILE).write_text(str(os.getpid()))
            if self.as_postgres:
                shutil.chown(self.root, user="postgres", group="postgres")
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"

    def _run(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self.as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # PG* variables of the caller (PGPORT, PGDATA, ...) must not steer the throwaway cluster.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        return subprocess.run(
            cmd,
            cwd=self.root,  # runuser keeps the cwd; the caller's may be unreadable for postgres
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def start(self) -> None:
        init = self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-locale",
            "--no-sync",
            timeout=120,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stdout}{init.stderr}")
        for _ in range(START_ATTEMPTS):
            self.port = _free_port()
            options = ["-p", str(self.port), "-k", str(self.root)]
            for key, value in SERVER_SETTINGS.items():
                options += ["-c", f"{key}={value}"]
            started = self._run(
                "pg_ctl",
                "start",
                "--pgdata",
                str(self.data),
                "--log",
                str(self.log),
                "--wait",
                "--timeout",
                str(START_TIMEOUT_S),
                "-o",
                shlex.join(options),  # pg_ctl hands these to a shell
                timeout=START_TIMEOUT_S + 10,
            )
            if started.returncode == 0:
                return
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            self.stop()  # a postmaster that did come up but too late, if any
            if "could not bind" not in log and "already in use" not in log:
                raise RuntimeError(
                    f"pg_ctl start failed ({started.returncode}):\n"
                    f"{started.stdout}{started.stderr}\n--- server log ---\n{log[-4000:]}"
                )
            self.log.unlink(missing_ok=True)
        raise RuntimeError(f"no free port found for postgres after {START_ATTEMPTS} attempts")

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.data / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        """Stop the postmaster: fast, then immediate, then SIGKILL. Never raises."""
        for mode in ("fast", "immediate"):
            if self.postmaster_pid() is None and not _postmasters(self.data):
                break
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._run(
                    "pg_ctl",
                    "stop",
                    "--pgdata",
                    str(self.data),
                    "--mode",
                    mode,
                    "--wait",
                    "--timeout",
                    str(STOP_TIMEOUT_S),
                    timeout=STOP_TIMEOUT_S + 10,
                )
        for pid in _postmasters(self.data):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def reap_stale_clusters(parent: str = TMP_PARENT) -> None:
    """Stop and delete clusters whose owning test session is gone (killed with SIGKILL)."""
    bindir = find_bindir()
    for root in Path(parent).glob(TMP_PREFIX + "*"):
        try:
            owner = int((root / OWNER_FILE).read_text())
        except (OSError, ValueError):
            continue
        if _pid_alive(owner):
            continue
        if bindir is not None:
            Cluster(bindir, root).stop()
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so pytest runs the teardown that stops the cluster."""

    def handler(signum: int, frame: types.FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def throwaway_server() -> Iterator[PostgresServer]:
    """Start a throwaway cluster; yield it; stop and delete it however the block ends."""
    bindir = find_bindir()
    if bindir is None:
        unavailable(
            f"no PostgreSQL server binaries (initdb, pg_ctl, postgres) found and {URL_ENV} "
            "is not set; install the Debian package `postgresql`, or set the variable"
        )
    reap_stale_clusters()
    cluster = Cluster(bindir)
    with _sigterm_as_interrupt():
        try:
            with _signals_deferred():
                cluster.start()
            yield PostgresServer(host="127.0.0.1", port=cluster.port, user="postgres", managed=True)
        finally:
            with _signals_deferred():
                cluster.destroy()


# --- fixtures -------------------------------------------------------------------------------


def _session_token() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        unavailable("the asyncpg package is not installed")
    url = os.environ.get(URL_ENV)
    if url:
        server = server_from_url(url)
        try:
            server.server_version()
        except Exception as e:  # a URL that was given but does not work is always an error
            pytest.fail(f"{URL_ENV}={url!r}: cannot connect: {e!r}", pytrace=False)
        yield server
        return
    with throwaway_server() as server:
        yield server


@dataclass
class _Names:
    """Unique database names; the session token keeps concurrent sessions on one server apart."""

    token: str = field(default_factory=_session_token)
    counter: int = 0

    def next(self, kind: str) -> str:
        self.counter += 1
        return f"sw_{kind}_{self.token}_{self.counter}"


@pytest.fixture(scope="session")
def _postgres_names() -> _Names:
    return _Names()


@pytest.fixture
def postgres_database(postgres_server: PostgresServer, _postgres_names: _Names) -> Iterator[str]:
    """The asyncpg URL of a fresh, empty database (from template0), dropped after the test."""
    name = _postgres_names.next("test")
    url = postgres_server.create_database(name)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(scope="session")
def postgres_template_factory(
    postgres_server: PostgresServer, _postgres_names: _Names
) -> Iterator[TemplateFactory]:
    """``make_template(name, setup) -> database name``: build a template once per session."""
    made: dict[str, str] = {}

    def make_template(name: str, setup: Callable[[str], None]) -> str:
        if not _IDENT.fullmatch(name):
            raise ValueError(f"template name must match {_IDENT.pattern}: {name!r}")
        if name in made:
            return made[name]
        real = f"sw_tmpl_{name}_{_postgres_names.token}"
        postgres_server.drop_database(real)
        url = postgres_server.create_database(real)
        try:
            setup(url)
            postgres_server.mark_template(real)
        except BaseException:
            postgres_server.drop_database(real)
            raise
        made[name] = real
        return real

    try:
        yield make_template
    finally:
        for real in made.values():
            with contextlib.suppress(Exception):
                postgres_server.drop_database(real)


def clone_database(server: PostgresServer, template: str, name: str) -> str:
    """``CREATE DATABASE name TEMPLATE template``; returns the clone's asyncpg URL."""
    return server.create_database(name, template=template)


@pytest.fixture
def postgres_clone(
    postgres_server: PostgresServer, _postgres_names: _Names
) -> Iterator[CloneFactory]:
    """``clone(template) -> url``: a fresh copy of a template database, dropped after the test."""
    clones: list[str] = []

    def clone(template: str) -> str:
        name = _postgres_names.next("clone")
        url = clone_database(postgres_server, template, name)
        clones.append(name)
        return url

    try:
        yield clone
    finally:
        errors: list[BaseException] = []
        for name in clones:
            try:
                postgres_server.drop_database(name)
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]


POSTGRES_FIXTURES = frozenset(
    {"postgres_server", "postgres_database", "postgres_template_factory", "postgres_clone"}
)
