"""TLS to the source and the MySQL sink, against a real MariaDB that speaks only TLS.

The module's server (``tls_server``) runs with ``--ssl-ca/--ssl-cert/--ssl-key`` and
``--require-secure-transport=ON``: a connection that does not encrypt is refused, so
every row read or written here went over TLS. Its certificate is signed by a test CA
made with ``openssl`` and names 127.0.0.1 and localhost; it also listens on
127.0.0.2, an address its certificate does not name (verify_identity must refuse
it, verify_ca must not). A second, unrelated CA stands for "the wrong CA file".

* ``required`` and ``verify_identity`` work for the source (snapshot, control
  connection, binlog dump, GTID probe; in a thread and in the decoder process)
  and for the MySQL sink (also with a client certificate for a REQUIRE SUBJECT user);
* a wrong CA, or a host name the certificate lacks, fails fast as a ``FatalError``
  naming the setting and the CA file, and a ``ferry run`` node pauses saying so;
* ``disabled`` sends no TLS: refused by the TLS-only server, and on a server that
  offers TLS but allows clear text the session's ``Ssl_cipher`` is empty;
* ``required`` against a server without TLS fails clearly, before credentials are sent;
* ``ferry check`` prints protocol and cipher for the source and the sink.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pipeline.dialect import TlsConfig, connect, connect_kwargs, session_tls
from pipeline.errors import FatalError, classify
from pipeline.model import Batch, Position, RowChange
from selector.config import MySQLSourceConfig
from selector.mysql import MySQLSelector
from selector.process import open_selector
from selector.store import MemoryPositionStore
from sinks.mysql import MySQLSink, MySQLSinkConfig
from tests import services
from tests.conftest import unavailable
from tests.ferryproc import FerryNode, ferry, ferry_status, wait_until, write_config

CLIENT_SUBJECT = "/CN=ferry-client"


@dataclass
class Certs:
    ca: Path  # signed the server's and the client's certificates
    other_ca: Path  # an unrelated CA
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    done = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"openssl {' '.join(args)}: {done.stderr}"


def make_certs(where: Path) -> Certs:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate signed by
    it, and an unrelated CA; RSA 2048, valid for two days."""
    if shutil.which("openssl") is None:
        unavailable("openssl not found (Debian package openssl)")
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE"]
    ca_ext += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    for name, subject in (("ca", "/CN=ferry test CA"), ("other-ca", "/CN=unrelated test CA")):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", subject,
            "-keyout", f"{name}.key", "-out", f"{name}.pem", *ca_ext, cwd=where,
        )  # fmt: skip
    leaves = {
        "server": ("/CN=localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                   "extendedKeyUsage=serverAuth\n"),
        "client": (CLIENT_SUBJECT, "extendedKeyUsage=clientAuth\n"),
    }  # fmt: skip
    for name, (subject, extensions) in leaves.items():
        (where / f"{name}.ext").write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n" + extensions
        )
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=where,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem",
            cwd=where,
        )  # fmt: skip
    return Certs(
        ca=where / "ca.pem",
        other_ca=where / "other-ca.pem",
        server_cert=where / "server.pem",
        server_key=where / "server.key",
        client_cert=where / "client.pem",
        client_key=where / "client.key",
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("tls-certs"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Any]:
    """A private MariaDB that accepts TLS connections only, on 127.0.0.1 and 127.0.0.2."""
    args = [
        f"--ssl-ca={certs.ca}",
        f"--ssl-cert={certs.server_cert}",
        f"--ssl-key={certs.server_key}",
        "--require-secure-transport=ON",
        "--bind-address=127.0.0.1,127.0.0.2",
    ]
    try:
        server = services.MariaDB(tmp_path_factory.mktemp("mariadb-tls"), args).start()
    except services.ServiceUnavailable as exc:
        unavailable(str(exc))
    # the fixture's own client is PyMySQL with no ssl options: it encrypts when offered
    assert server.variables("have_ssl") == {"have_ssl": "YES"}
    yield server
    services.stop_quietly([server])


@pytest.fixture
def db(tls_server: Any) -> Iterator[str]:
    name = f"tls_{uuid.uuid4().hex[:8]}"
    tls_server.execute(f"CREATE DATABASE `{name}`")
    yield name
    tls_server.execute(f"DROP DATABASE IF EXISTS `{name}`")


def tls(certs: Certs, mode: str, **files: Any) -> dict[str, Any]:
    """A ``tls:`` block; verify modes get the right CA unless ``ca`` is given."""
    block: dict[str, Any] = {"mode": mode, **{k: str(v) for k, v in files.items()}}
    if mode.startswith("verify") and "ca" not in block:
        block["ca"] = str(certs.ca)
    return block


def source_config(server: Any, db: str, tls_block: dict[str, Any], **extra: Any) -> Any:
    fields: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "server_id": random.randint(1000, 2**31),
        "include": [f"{db}.*"],
        "tls": tls_block,
        "connect_timeout_ms": 3000,
        **extra,
    }
    return MySQLSourceConfig.model_validate(fields)


def sink_config(server: Any, db: str, tls_block: dict[str, Any], **extra: Any) -> Any:
    fields: dict[str, Any] = {
        "type": "mysql",
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "schema_map": {"src": db},
        "checkpoint_schema": db,
        "timeout_s": 5,
        "tls": tls_block,
        **extra,
    }
    return MySQLSinkConfig.model_validate(fields)


def collect(sel: Any, rows: int, timeout: float = 30.0) -> list[RowChange]:
    got: list[RowChange] = []
    deadline = time.monotonic() + timeout
    while len(got) < rows:
        assert time.monotonic() < deadline, f"only {len(got)} of {rows} rows arrived"
        batch = sel.select()
        got.extend(c for c in batch.changes if isinstance(c, RowChange))
        sel.ack(batch.batch_id)
    return got


def row_batch(n: int, *rows: dict[str, Any]) -> Batch:
    at = Position("mysql-bin.000001", 1000 + n, ts=1700000000.0 + n)
    changes = [RowChange("src", "t", "insert", None, row, ("id",), 0.0, at) for row in rows]
    return Batch(n, list(changes), at, first_event_ts=0.0)


def elapsed(since: float) -> float:
    return time.monotonic() - since


# -- the source ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "decoder"),
    [("required", "thread"), ("verify_identity", "thread"), ("verify_identity", "process")],
)
def test_source_snapshots_and_streams_over_tls(
    tls_server: Any, db: str, certs: Certs, mode: str, decoder: str
) -> None:
    """Snapshot reader, control connection and binlog dump (and in the process decoder, its
    child's) all connect with source.tls; the server accepts nothing else."""
    tls_server.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(20))")
    tls_server.execute(f"INSERT INTO `{db}`.t VALUES (1, 'a'), (2, 'b')")
    config = source_config(tls_server, db, tls(certs, mode), decoder=decoder)
    assert config.snapshot_mode == "initial"
    sel = open_selector(config, 100, 100, MemoryPositionStore(), "tls")
    sel.start()
    try:
        snapshot = collect(sel, 2)
        assert [c.op for c in snapshot] == ["read", "read"]
        tls_server.execute(f"INSERT INTO `{db}`.t VALUES (3, 'c')")
        tls_server.execute(f"UPDATE `{db}`.t SET v = 'z' WHERE id = 1")
        streamed = collect(sel, 2)
        assert [(c.op, c.row["id"]) for c in streamed] == [("insert", 3), ("update", 1)]
    finally:
        sel.stop()
        sel.select()  # a stopped selector releases its connections on the next select


def test_source_start_from_a_gtid_probes_over_tls(tls_server: Any, db: str, certs: Certs) -> None:
    tls_server.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY)")
    tls_server.execute(f"INSERT INTO `{db}`.t VALUES (1)")
    gtid = tls_server.execute("SELECT @@gtid_binlog_pos")[0][0]
    tls_server.execute(f"INSERT INTO `{db}`.t VALUES (2)")
    config = source_config(tls_server, db, tls(certs, "verify_identity"), start={"gtid": gtid})
    sel = MySQLSelector(config, 100, 100, MemoryPositionStore(), "tls-gtid")
    sel.start()
    try:
        assert [c.row["id"] for c in collect(sel, 1)] == [2]
    finally:
        sel.stop()


def test_source_with_the_wrong_ca_fails_fast_and_fatally(
    tls_server: Any, db: str, certs: Certs
) -> None:
    config = source_config(
        tls_server, db, tls(certs, "verify_identity", ca=certs.other_ca), start="latest"
    )
    began = time.monotonic()
    with pytest.raises(FatalError) as caught:
        MySQLSelector(config, 100, 100, MemoryPositionStore(), "tls-wrong-ca").start()
    assert elapsed(began) < 2.0, "a wrong CA must not wait for timeouts or retries"
    message = str(caught.value)
    assert "source.tls" in message and str(certs.other_ca) in message, message
    assert "failed verification" in message and "self-signed certificate" in message, message
    assert classify(caught.value) is caught.value


def test_verify_identity_checks_the_host_name_and_verify_ca_does_not(
    tls_server: Any, db: str, certs: Certs
) -> None:
    """127.0.0.2 reaches the same server, but its certificate names 127.0.0.1 and localhost."""
    other_address = {"host": "127.0.0.2", "start": "latest"}
    config = source_config(tls_server, db, tls(certs, "verify_identity"), **other_address)
    began = time.monotonic()
    with pytest.raises(FatalError) as caught:
        MySQLSelector(config, 100, 100, MemoryPositionStore(), "tls-host").start()
    assert elapsed(began) < 2.0
    message = str(caught.value)
    assert "does not name the host" in message and "verify_identity" in message, message
    assert "127.0.0.2" in message, message

    config = source_config(tls_server, db, tls(certs, "verify_ca"), **other_address)
    sel = MySQLSelector(config, 100, 100, MemoryPositionStore(), "tls-verify-ca")
    sel.start()
    sel.stop()


def test_required_against_a_server_without_tls_fails_clearly(mariadb: Any, certs: Certs) -> None:
    if mariadb.variables("have_ssl").get("have_ssl") == "YES":
        pytest.skip("the shared test server offers TLS; this test needs one that does not")
    for mode in ("required", "verify_identity"):
        config = source_config(mariadb, "x", tls(certs, mode), start="latest")
        with pytest.raises(FatalError) as caught:
            MySQLSelector(config, 100, 100, MemoryPositionStore(), "no-tls").start()
        message = str(caught.value)
        assert f"source.tls.mode is {mode}" in message and "offers no TLS" in message, message
        assert "credentials were not sent" in message, message

        sink = MySQLSink(sink_config(mariadb, "x", tls(certs, mode)), "no-tls")
        with pytest.raises(FatalError, match=rf"sink\.tls\.mode is {mode}.*offers no TLS"):
            sink.open()
    # preferred (the default) falls back to clear text, as before
    config = source_config(mariadb, "x", {"mode": "preferred"})
    conn = connect(host=mariadb.host, port=mariadb.port, user=mariadb.user,
                   **connect_kwargs(config.tls, "source.tls"))  # fmt: skip
    try:
        assert session_tls(conn) == ""
    finally:
        conn.close()


def test_disabled_sends_no_tls(tls_server: Any, certs: Certs) -> None:
    def open_session(mode: str) -> Any:
        settings = connect_kwargs(TlsConfig.model_validate({"mode": mode}), "source.tls")
        return connect(host=tls_server.host, port=tls_server.port, user="root", **settings)

    with pytest.raises(Exception) as caught:
        open_session("disabled")  # the server requires secure transport
    assert isinstance(classify(caught.value), FatalError)
    assert "sent no TLS" in str(caught.value) and "require_secure_transport" in str(caught.value)

    # the same server allowing clear text: offered TLS is not taken
    tls_server.execute("SET GLOBAL require_secure_transport = OFF")
    try:
        for mode, encrypted in (("disabled", False), ("preferred", True)):
            conn = open_session(mode)
            try:
                with conn.cursor() as cur:
                    cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
                    [(_, cipher)] = cur.fetchall()
                assert bool(cipher) is encrypted, (mode, cipher)
            finally:
                conn.close()
    finally:
        tls_server.execute("SET GLOBAL require_secure_transport = ON")


# -- the MySQL sink ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["required", "verify_identity"])
def test_sink_writes_a_batch_over_tls(tls_server: Any, db: str, certs: Certs, mode: str) -> None:
    tls_server.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(20))")
    sink = MySQLSink(sink_config(tls_server, db, tls(certs, mode)), f"p-{mode}")
    sink.open()
    try:
        sink.load(row_batch(1, {"id": 1, "v": "a"}, {"id": 2, "v": "b"}), 1)
        assert session_tls(sink._connection()).startswith("TLSv1.")
    finally:
        sink.close()
    assert tls_server.execute(f"SELECT id, v FROM `{db}`.t ORDER BY id") == ((1, "a"), (2, "b"))


def test_sink_with_a_client_certificate(tls_server: Any, db: str, certs: Certs) -> None:
    """A user created REQUIRE SUBJECT gets in with sink.tls.cert/key, and not without."""
    user, password = f"x509_{uuid.uuid4().hex[:6]}", "pw-x509"
    tls_server.execute(
        f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s REQUIRE SUBJECT %s",
        (password, CLIENT_SUBJECT),
    )
    try:
        tls_server.execute(f"GRANT ALL ON `{db}`.* TO '{user}'@'%'")
        tls_server.execute(f"CREATE TABLE `{db}`.t (id INT PRIMARY KEY, v VARCHAR(20))")
        client = {"cert": certs.client_cert, "key": certs.client_key}
        fields = {"user": user, "password": password}
        sink = MySQLSink(
            sink_config(tls_server, db, tls(certs, "verify_identity", **client), **fields), "p"
        )
        sink.open()
        try:
            sink.load(row_batch(1, {"id": 7, "v": "x509"}), 1)
        finally:
            sink.close()
        assert tls_server.execute(f"SELECT id, v FROM `{db}`.t") == ((7, "x509"),)

        without = MySQLSink(
            sink_config(tls_server, db, tls(certs, "verify_identity"), **fields), "p"
        )
        with pytest.raises(FatalError, match="Access denied") as caught:
            without.open()
        assert password not in str(caught.value)
    finally:
        tls_server.execute(f"DROP USER IF EXISTS '{user}'@'%'")


def test_sink_with_the_wrong_ca_fails_fast_and_fatally(
    tls_server: Any, db: str, certs: Certs
) -> None:
    sink = MySQLSink(
        sink_config(tls_server, db, tls(certs, "verify_ca", ca=certs.other_ca)), "wrong-ca"
    )
    began = time.monotonic()
    with pytest.raises(FatalError) as caught:
        sink.load(row_batch(1, {"id": 1, "v": "a"}), 1)
    assert elapsed(began) < 2.0
    message = str(caught.value)
    assert "sink.tls" in message and str(certs.other_ca) in message, message
    assert "failed verification" in message, message

    missing = certs.ca.parent / "no-such-ca.pem"
    sink = MySQLSink(sink_config(tls_server, db, tls(certs, "verify_ca", ca=missing)), "no-ca")
    with pytest.raises(
        FatalError, match=rf"sink\.tls\.ca: cannot read the CA certificate {missing}"
    ):
        sink.open()


# -- ferry check and ferry run -----------------------------------------------------------


def pipeline_file(
    tmp_path: Path, tls_server: Any, db: str, redis_server: Any, prefix: str, **tls_blocks: Any
) -> Path:
    return write_config(
        tmp_path / "tls.yaml",
        pipeline_id=f"tls-{uuid.uuid4().hex[:6]}",
        mariadb=tls_server,
        schema=db,
        redis_url=redis_server.url,
        prefix=prefix,
        source={"tls": tls_blocks["source"]},
        sink={
            "type": "mysql",
            "host": tls_server.host,
            "port": tls_server.port,
            "user": tls_server.user,
            "schema_map": {db: f"{db}_copy"},
            "checkpoint_schema": db,
            "tls": tls_blocks["sink"],
        },
        server_id=random.randint(1000, 2**31),
    )


def test_ferry_check_shows_protocol_and_cipher(
    tmp_path: Path, tls_server: Any, db: str, certs: Certs, redis_server: Any, key_prefix: str
) -> None:
    good = tls(certs, "verify_identity")
    config = pipeline_file(
        tmp_path, tls_server, db, redis_server, key_prefix, source=good, sink=good
    )
    done = ferry(config, "check")
    assert done.returncode == 0, done.stdout + done.stderr
    for who in ("source", "sink"):
        line = rf"^✓ {who} TLS: TLSv1\.[23] \S+ \(verify_identity\)$"
        assert re.search(line, done.stdout, re.MULTILINE), done.stdout
    assert "tls=verify_identity" in done.stdout, done.stdout  # the config summary

    wrong = tls(certs, "verify_identity", ca=certs.other_ca)
    config = pipeline_file(
        tmp_path, tls_server, db, redis_server, key_prefix, source=wrong, sink=good
    )
    done = ferry(config, "check")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    [failed] = [i for i, line in enumerate(lines) if line.startswith("✗ connect to")]
    assert "source.tls" in lines[failed + 1] and str(certs.other_ca) in lines[failed + 1], lines
    assert re.search(r"^✓ sink TLS: TLSv1\.[23] ", done.stdout, re.MULTILINE), done.stdout


def test_a_node_with_the_wrong_ca_pauses_saying_so(
    tmp_path: Path, tls_server: Any, db: str, certs: Certs, redis_server: Any, key_prefix: str
) -> None:
    """The decoder process's TlsError reaches the node as fatal: paused, not retried quietly."""
    wrong = tls(certs, "verify_identity", ca=certs.other_ca)
    good = tls(certs, "verify_identity")
    config = pipeline_file(
        tmp_path, tls_server, db, redis_server, key_prefix, source=wrong, sink=good
    )
    node = FerryNode(config, "a").start()
    try:
        status = wait_until(
            lambda: (s := ferry_status(config))["state"] == "paused" and s, 60, "a pause"
        )
        assert "source.tls" in status["error"] and str(certs.other_ca) in status["error"], status
        assert "failed verification" in status["error"], status
    finally:
        node.stop()
    assert "retry" not in node.log().lower(), node.log()
