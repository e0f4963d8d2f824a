"""source.tls / sink.tls: validation, the pymysql arguments, error classes and messages
(no server; tests/integration/test_tls.py has the real TLS-only MariaDB)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pymysql
import pytest
import redis
from pydantic import ValidationError
from pymysql.constants import CLIENT

import arbitrate.redis  # noqa: F401  (registers redis-py's classifier)
from pipeline.config import parse_config
from pipeline.dialect import Connection, TlsConfig, TlsError, connect_kwargs, describe, ssl_context
from pipeline.dialect.tls import TlsContext, _handshake_message
from pipeline.errors import ConfigError, FatalError, ResumableError, classify
from selector.config import MySQLSourceConfig
from sinks.mysql import MySQLSinkConfig

# a self-signed CA certificate (EC P-256, valid until 2126), only ever loaded, never used
CA_PEM = """\
-----BEGIN CERTIFICATE-----
MIIBkDCCATegAwIBAgIUYYvY6zn69dyf1DfKi7G1cmmFbDUwCgYIKoZIzj0EAwIw
HTEbMBkGA1UEAwwSZmVycnkgdW5pdCB0ZXN0IENBMCAXDTI2MTIwNjA4MTUwNFoY
DzIxMjYxMTEyMDgxNTA0WjAdMRswGQYDVQQDDBJmZXJyeSB1bml0IHRlc3QgQ0Ew
WTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAASrvKfKjvW6SpNHEWcbeMc2bb+gS9J3
VRKoXkvHLdYMbRLw79F24f3jh9jm8KDiXONgzvFo2TE+eWpO02KvMLHAo1MwUTAd
BgNVHQ4EFgQU4RhF3vSBOrko/Pd8pC2/C9eMfcgwHwYDVR0jBBgwFoAU4RhF3vSB
Orko/Pd8pC2/C9eMfcgwDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNHADBE
AiAuHYfo7vBe1qLCODk9OuY4UbgMfQUYjDYZYTGXjp3o0wIgBfJ8tzjb9PaKYSfm
GTz1ZS7H3oOswfyYiwd6cUWuDCk=
-----END CERTIFICATE-----
"""

BASE = """
pipeline: {id: shop}
source: {user: repl, password: s3cret-pw, server_id: 7, tls: SOURCE}
sink: {type: mysql, user: ferry, password: t4rget-pw, tls: SINK}
"""


def parse(source: str = "{}", sink: str = "{}", env: dict[str, str] | None = None) -> Any:
    return parse_config(BASE.replace("SOURCE", source).replace("SINK", sink), "t.yaml", env or {})


def problems(source: str = "{}", sink: str = "{}") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(source, sink)
    return [line.strip() for line in str(caught.value).splitlines()[1:]]


def test_default_is_preferred_for_source_and_sink() -> None:
    config = parse_config(BASE.replace(", tls: SOURCE", "").replace(", tls: SINK", ""), env={})
    assert config.source.tls == TlsConfig(mode="preferred")
    assert config.sink.tls.mode == "preferred"
    assert "tls=preferred" in config.summary()


def test_modes_and_files_are_read() -> None:
    config = parse(
        "{mode: verify_identity, ca: /etc/ferry/ca.pem}",
        "{mode: required, cert: /etc/ferry/client.pem, key: /etc/ferry/client.key}",
    )
    assert config.source.tls.mode == "verify_identity"
    assert config.source.tls.ca == "/etc/ferry/ca.pem"
    assert (config.sink.tls.cert, config.sink.tls.key) == (
        "/etc/ferry/client.pem",
        "/etc/ferry/client.key",
    )
    assert "tls=verify_identity" in config.summary() and "tls=required" in config.summary()


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        ("{mode: verify_ca}", "mode verify_ca verifies the server's certificate: it needs `ca`"),
        ("{mode: verify_identity}", "mode verify_identity verifies"),
        ("{mode: required, ca: /ca.pem}", "`ca` is only used by mode verify_ca or verify_identity"),
        ("{ca: /ca.pem}", "mode preferred verifies nothing"),
        ("{mode: required, cert: /c.pem}", "`cert` and `key` go together"),
        ("{mode: required, key: /k.pem}", "`cert` and `key` go together"),
        ("{mode: disabled, cert: /c.pem, key: /k.pem}", "mode disabled sends no TLS"),
    ],
)
def test_inconsistent_blocks_are_named_by_path(block: str, expected: str) -> None:
    [source] = problems(source=block)
    assert source.startswith("source.tls: ") and expected in source, source
    [sink] = problems(sink=block)
    assert sink.startswith("sink.tls: ") and expected in sink, sink


def test_unknown_mode_and_keys_are_errors() -> None:
    found = problems("{mode: verify_idenity}", "{mode: required, ssl_ca: /x}")
    assert found[0].startswith("source.tls.mode: input should be 'disabled', 'preferred'")
    assert found[1] == "sink.tls.ssl_ca: extra inputs are not permitted"


def test_an_empty_path_is_unset_so_files_can_come_from_the_environment() -> None:
    block = '{mode: "${TLS_MODE:-preferred}", ca: "${TLS_CA:-}"}'
    assert parse(block).source.tls == TlsConfig()
    config = parse(block, env={"TLS_MODE": "verify_ca", "TLS_CA": "/run/ca.pem"})
    assert config.source.tls == TlsConfig(mode="verify_ca", ca="/run/ca.pem")


def test_secrets_stay_out_of_tls_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        parse("{mode: verify_ca}", "{mode: nope}")
    assert "s3cret-pw" not in str(caught.value) and "t4rget-pw" not in str(caught.value)


# -- what pymysql is given ------------------------------------------------------------


def test_disabled_turns_tls_off_in_pymysql() -> None:
    assert connect_kwargs(TlsConfig(mode="disabled"), "source.tls") == {"ssl_disabled": True}
    conn = Connection(host="127.0.0.1", defer_connect=True, ssl_disabled=True)
    assert not conn.ssl


@pytest.mark.parametrize(
    ("mode", "verify", "hostname"),
    [
        ("preferred", ssl.CERT_NONE, False),
        ("required", ssl.CERT_NONE, False),
        ("verify_ca", ssl.CERT_REQUIRED, False),
        ("verify_identity", ssl.CERT_REQUIRED, True),
    ],
)
def test_other_modes_pass_a_context_that_carries_the_mode(
    mode: str, verify: ssl.VerifyMode, hostname: bool, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text(CA_PEM)
    tls = TlsConfig(mode=mode, ca=str(ca) if mode.startswith("verify") else None)  # type: ignore[arg-type]
    [(name, context)] = connect_kwargs(tls, "sink.tls").items()
    assert name == "ssl" and isinstance(context, TlsContext)
    assert (context.mode, context.setting) == (mode, "sink.tls")
    assert context.verify_mode == verify and context.check_hostname is hostname
    if mode.startswith("verify"):  # the given CA only, not the system's store
        assert len(context.get_ca_certs()) == 1
    conn = Connection(host="127.0.0.1", defer_connect=True, ssl=context)
    assert conn.ssl and conn.ctx is context


def test_unreadable_files_are_fatal_errors_naming_the_field(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(
        TlsError, match=rf"^source\.tls\.ca: cannot read the CA certificate {missing}"
    ):
        ssl_context(TlsConfig(mode="verify_ca", ca=str(missing)), "source.tls")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(TlsError, match=r"sink\.tls\.ca: .*junk\.pem"):
        ssl_context(TlsConfig(mode="verify_identity", ca=str(junk)), "sink.tls")
    key = tmp_path / "client.key"
    key.write_text(
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(TlsError) as caught:
        ssl_context(TlsConfig(mode="required", cert=str(junk), key=str(key)), "sink.tls")
    message = str(caught.value)
    assert message.startswith("sink.tls.cert / sink.tls.key: cannot load the client certificate")
    assert "c2VjcmV0" not in message  # a key file's contents are never shown
    assert isinstance(caught.value, FatalError)


# -- no TLS offered: refused before the credentials -------------------------------------


def _greeted(mode: str, capabilities: int) -> Connection:
    tls = TlsConfig(mode=mode, ca=None)  # type: ignore[arg-type]
    conn = Connection(
        host="127.0.0.1",
        user="u",
        password="pw",
        defer_connect=True,
        **connect_kwargs(tls, "x.tls"),
    )
    conn.server_capabilities = capabilities
    conn.server_version = "10.11.19-MariaDB"
    return conn


def test_required_refuses_a_server_without_tls_before_sending_anything() -> None:
    conn = _greeted("required", CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION)
    sent: list[bytes] = []
    conn.write_packet = sent.append  # type: ignore[method-assign]
    with pytest.raises(TlsError, match=r"^x\.tls\.mode is required, but the server at"):
        conn._request_authentication()
    assert sent == []  # not even the handshake response, let alone the password


def test_preferred_speaks_clear_text_to_a_server_without_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conn = _greeted("preferred", CLIENT.PROTOCOL_41 | CLIENT.SECURE_CONNECTION)
    conn.client_flag |= CLIENT.SSL
    handshakes: list[bool] = []
    monkeypatch.setattr(
        pymysql.connections.Connection,
        "_request_authentication",
        lambda self: handshakes.append(self.ssl),
    )
    conn._request_authentication()
    assert handshakes == [False] and not conn.client_flag & CLIENT.SSL


# -- errors ----------------------------------------------------------------------------


def _verification_error(code: int, message: str) -> ssl.SSLCertVerificationError:
    error = ssl.SSLCertVerificationError(1, f"[SSL: CERTIFICATE_VERIFY_FAILED] {message}")
    error.verify_code, error.verify_message = code, message
    return error


def test_verification_messages_name_the_setting_and_the_ca() -> None:
    context = ssl_context(TlsConfig(mode="required"), "source.tls")
    assert context is not None
    context.mode, context.ca = "verify_identity", "/etc/ferry/ca.pem"
    chain = _verification_error(19, "self-signed certificate in certificate chain")
    text = _handshake_message(context, chain, "db1", 3306)
    assert text.startswith("source.tls: the certificate of the server at db1:3306 failed")
    assert "source.tls.ca /etc/ferry/ca.pem" in text and "self-signed" in text
    host = _verification_error(62, "Hostname mismatch, certificate is not valid for 'db1'.")
    text = _handshake_message(context, host, "db1", 3306)
    assert "does not name the host" in text and "verify_ca" in text


def test_a_failed_handshake_wrapped_by_pymysql_is_fatal() -> None:
    """PyMySQL reports a failed TLS handshake as 2003 "can't connect", normally resumable."""
    wrapped = pymysql.err.OperationalError(2003, "Can't connect to MySQL server ([SSL] ...)")
    wrapped.original_exception = _verification_error(19, "self-signed")  # type: ignore[attr-defined]
    assert isinstance(classify(wrapped), FatalError)
    wrapped.original_exception = ssl.SSLError(1, "[SSL: NO_SHARED_CIPHER] no shared cipher")  # type: ignore[attr-defined]
    assert isinstance(classify(wrapped), FatalError)
    wrapped.original_exception = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")  # type: ignore[attr-defined]
    assert isinstance(classify(wrapped), ResumableError)  # the network's, not the setting's
    wrapped.original_exception = ConnectionRefusedError(111, "refused")  # type: ignore[attr-defined]
    assert isinstance(classify(wrapped), ResumableError)
    assert isinstance(classify(TlsError("x")), FatalError)


def test_rediss_certificate_failure_is_fatal() -> None:
    try:
        raise redis.ConnectionError("Error 1 connecting") from _verification_error(19, "bad")
    except redis.ConnectionError as exc:
        assert isinstance(classify(exc), FatalError)
    assert isinstance(classify(redis.ConnectionError("Connection refused")), ResumableError)


# -- ferry check -----------------------------------------------------------------------


class _Cursor:
    def __init__(self, rows: list[tuple[str, str]]) -> None:
        self.rows = rows

    def __enter__(self) -> _Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str) -> None:
        assert "Ssl_version" in sql and "Ssl_cipher" in sql

    def fetchall(self) -> list[tuple[str, str]]:
        return self.rows


class _Conn:
    def __init__(self, version: str, cipher: str) -> None:
        self.rows = [("Ssl_cipher", cipher), ("Ssl_version", version)]

    def cursor(self) -> _Cursor:
        return _Cursor(self.rows)


def test_describe_says_protocol_cipher_and_mode() -> None:
    verified = TlsConfig(mode="verify_identity", ca="/ca.pem")
    line = describe(_Conn("TLSv1.3", "TLS_AES_256_GCM_SHA384"), verified, "source.tls")
    assert line == ("source TLS: TLSv1.3 TLS_AES_256_GCM_SHA384 (verify_identity)", True, "")
    what, ok, warning = describe(
        _Conn("TLSv1.3", "TLS_AES_256_GCM_SHA384"), TlsConfig(), "sink.tls"
    )
    assert what == "sink TLS: TLSv1.3 TLS_AES_256_GCM_SHA384 (preferred)" and ok
    assert "not verified" in warning and "sink.tls.mode: verify_identity" in warning
    what, ok, warning = describe(_Conn("", ""), TlsConfig(), "source.tls")
    assert what == "source TLS: not encrypted (mode preferred: the server offers no TLS)" and ok
    assert "clear text" in warning
    assert describe(_Conn("", ""), TlsConfig(mode="disabled"), "source.tls") == (
        "source TLS: not encrypted (mode disabled)",
        True,
        "",
    )


def test_models_carry_tls_and_reject_a_bad_one_directly() -> None:
    with pytest.raises(ValidationError, match="it needs `ca`"):
        MySQLSourceConfig(user="u", server_id=1, tls={"mode": "verify_ca"})  # type: ignore[arg-type]
    sink = MySQLSinkConfig.model_validate({"type": "mysql", "user": "u"})
    assert sink.tls.mode == "preferred"
