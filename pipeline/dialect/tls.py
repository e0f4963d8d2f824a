"""TLS for every MySQL/MariaDB connection ferry opens (the source's control connection,
the binlog dump and the reader's own control connection, the snapshot reader, the GTID
probe, the MySQL sink, ``ferry check``):

* :class:`TlsConfig`, the ``tls:`` block of ``source`` and ``sink (type: mysql)``,
  in the MySQL client's words (``--ssl-mode``):

  ================  ==============  =========  ==========  ==============================
  mode              encrypted       chain      host name   server offers no TLS
  ================  ==============  =========  ==========  ==============================
  disabled          never           -          -           clear text
  preferred         when offered    no         no          clear text (the default)
  required          yes             no         no          refused, credentials unsent
  verify_ca         yes             ``ca``     no          refused, credentials unsent
  verify_identity   yes             ``ca``     yes         refused, credentials unsent
  ================  ==============  =========  ==========  ==============================

  Only ``ca`` is trusted (not the system's CA store), as with ``--ssl-ca``;
  ``cert``/``key`` are a client certificate (for users created ``REQUIRE X509``).
  Files are read at each connect, so renewed certificates are picked up by the
  next reconnect; a file that cannot be read is a fatal error naming the setting.
* :func:`connect_kwargs` turns it into ``pymysql.connect`` keyword arguments
  (``ssl_disabled=True``, or an ``ssl`` context that carries the mode);
* :func:`connect` opens a :class:`Connection`: PyMySQL's, except that it holds
  the mode. PyMySQL given an ``ssl`` context continues in clear text (PyMySQL
  1.1) or fails with a bare "SSL is required" (1.2) when the server lacks the
  SSL capability; :class:`Connection` looks at the capability flags of the
  server's greeting itself, before the credentials go out, and refuses with a
  :class:`TlsError` that names the setting (``preferred`` falls back to clear
  text there). A failed certificate verification or TLS handshake also becomes
  a :class:`TlsError` naming the setting and the CA file. ``TlsError`` is a
  ``FatalError``: retrying cannot fix a certificate, so a node pauses saying so.
* :func:`describe` is the ``ferry check`` line: protocol and cipher of a
  session, from the server's ``Ssl_version`` / ``Ssl_cipher`` status.

Key files are only handed to OpenSSL; their contents are never logged, and an
encrypted key is refused (OpenSSL would otherwise prompt for its passphrase on
the terminal).
"""

from __future__ import annotations

import ssl
from typing import Any, Literal

import pymysql
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pymysql.constants import CLIENT

from pipeline.errors import FatalError

TlsMode = Literal["disabled", "preferred", "required", "verify_ca", "verify_identity"]

#: modes that refuse a connection without TLS
REQUIRED_MODES = frozenset({"required", "verify_ca", "verify_identity"})
#: modes that verify the server's certificate against ``ca``
VERIFY_MODES = frozenset({"verify_ca", "verify_identity"})

_ACCESS_DENIED = 1045
_HOST_MISMATCH = {62, 64}  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH


class TlsConfig(BaseModel):
    """`tls:` of `source` and `sink (type: mysql)` — the MySQL client's --ssl-mode words."""

    model_config = ConfigDict(extra="forbid")

    mode: TlsMode = Field(
        "preferred",
        description="disabled (never encrypt) | preferred (encrypt when the server offers"
        " TLS, verify nothing, else clear text) | required (encrypt or refuse; no"
        " verification) | verify_ca (also verify the server's certificate against `ca`) |"
        " verify_identity (also check that it names the host connected to)",
    )
    ca: str | None = Field(
        None,
        description="CA certificate file (PEM) that verify_ca and verify_identity trust"
        " (the only one; the system's store is not used)",
    )
    cert: str | None = Field(
        None, description="client certificate file (PEM), for users created REQUIRE X509; with key"
    )
    key: str | None = Field(
        None, description="private key file (PEM, not encrypted) of `cert`; never logged"
    )

    @field_validator("ca", "cert", "key")
    @classmethod
    def _empty_is_unset(cls, path: str | None) -> str | None:
        # `ca: ${MYSQL_CA:-}` in a file means "no CA" when the variable is unset
        return path if path else None

    @model_validator(mode="after")
    def _consistent(self) -> TlsConfig:
        if self.mode in VERIFY_MODES and self.ca is None:
            raise ValueError(
                f"mode {self.mode} verifies the server's certificate: it needs `ca`, the CA"
                " certificate file (PEM) that signed it"
            )
        if self.ca is not None and self.mode not in VERIFY_MODES:
            raise ValueError(
                f"`ca` is only used by mode verify_ca or verify_identity; mode {self.mode}"
                " verifies nothing: set mode: verify_identity (or verify_ca), or remove `ca`"
            )
        if (self.cert is None) != (self.key is None):
            raise ValueError("`cert` and `key` go together (a client certificate and its key)")
        if self.mode == "disabled" and self.cert is not None:
            raise ValueError("mode disabled sends no TLS: `cert` and `key` would not be used")
        return self


class TlsError(FatalError):
    """A TLS setting and the server disagree: no TLS offered, a failed verification or
    handshake, an unreadable certificate file. Retrying cannot help."""


class TlsContext(ssl.SSLContext):
    """An SSL context that remembers the ferry setting it was built from (for errors)."""

    setting: str = "tls"
    mode: str = "preferred"
    ca: str | None = None


def _encrypted_key() -> bytes:
    raise ValueError("the key file is encrypted (has a passphrase)")


def ssl_context(tls: TlsConfig, setting: str) -> TlsContext | None:
    """The SSL context for ``tls`` (None for mode disabled); reads the files now.

    ``setting`` names the block in errors, e.g. ``source.tls``.
    """
    if tls.mode == "disabled":
        return None
    context = TlsContext(ssl.PROTOCOL_TLS_CLIENT)
    context.setting, context.mode, context.ca = setting, tls.mode, tls.ca
    context.check_hostname = tls.mode == "verify_identity"
    context.verify_mode = ssl.CERT_REQUIRED if tls.mode in VERIFY_MODES else ssl.CERT_NONE
    if tls.ca is not None:
        try:
            context.load_verify_locations(cafile=tls.ca)
        except (OSError, ValueError) as exc:
            raise TlsError(
                f"{setting}.ca: cannot read the CA certificate {tls.ca}: {_reason(exc)}"
            ) from None
    if tls.cert is not None:
        try:
            context.load_cert_chain(tls.cert, tls.key, password=_encrypted_key)
        except (OSError, ValueError) as exc:
            raise TlsError(
                f"{setting}.cert / {setting}.key: cannot load the client certificate"
                f" {tls.cert} with its key {tls.key}: {_reason(exc)} (both PEM files, the key"
                " not encrypted)"
            ) from None
    return context


def connect_kwargs(tls: TlsConfig, setting: str) -> dict[str, Any]:
    """``pymysql.connect`` keyword arguments for ``tls``; use them with :func:`connect`.

    ``{"ssl_disabled": True}`` for mode disabled, else ``{"ssl": context}``, a
    :class:`TlsContext` that carries the mode (plain ``pymysql.connect`` would
    take them too, without the refusals :class:`Connection` adds).
    """
    context = ssl_context(tls, setting)
    if context is None:
        return {"ssl_disabled": True}
    return {"ssl": context}


class Connection(pymysql.connections.Connection):
    """PyMySQL's connection, holding the mode of a :class:`TlsContext` given as ``ssl``.

    Checked on the server's greeting, before any credential is sent: a server
    without the SSL capability is refused under required/verify_* (a
    :class:`TlsError`) and spoken to in clear text under preferred. A failed
    verification or handshake becomes a :class:`TlsError` naming the setting.
    """

    def _tls(self) -> TlsContext | None:
        context = getattr(self, "ctx", None) if self.ssl else None
        return context if isinstance(context, TlsContext) else None

    def _request_authentication(self) -> None:
        context = self._tls()
        if context is not None and not self.server_capabilities & CLIENT.SSL:
            if context.mode in REQUIRED_MODES:
                raise TlsError(
                    f"{context.setting}.mode is {context.mode}, but the server at"
                    f" {self.host}:{self.port} offers no TLS (the credentials were not sent):"
                    " enable TLS on the server (ssl_cert and ssl_key in its config), or set"
                    f" {context.setting}.mode: preferred to allow clear text"
                )
            self.ssl = False  # preferred: clear text, as the server offers nothing else
            self.client_flag &= ~CLIENT.SSL
        super()._request_authentication()

    def connect(self, sock: Any = None) -> None:
        try:
            super().connect(sock)
        except pymysql.err.OperationalError as exc:
            original = getattr(exc, "original_exception", None)
            context = self._tls()
            if context is not None and isinstance(original, ssl.SSLError):
                raise TlsError(_handshake_message(context, original, self.host, self.port)) from exc
            offered = getattr(self, "server_capabilities", 0) & CLIENT.SSL
            if exc.args and exc.args[0] == _ACCESS_DENIED and offered and not self.ssl:
                # tls.mode disabled against a server that wants TLS: MariaDB says only this
                raise pymysql.err.OperationalError(
                    _ACCESS_DENIED,
                    f"{exc.args[1]}; note: this connection sent no TLS (tls.mode disabled)"
                    " while the server offers it: a server with require_secure_transport=ON"
                    " refuses clear text with this same error",
                ) from exc
            raise


def connect(**kwargs: Any) -> Connection:
    """``pymysql.connect`` through :class:`Connection` (kwargs from :func:`connect_kwargs`)."""
    return Connection(**kwargs)


def _handshake_message(context: TlsContext, exc: ssl.SSLError, host: str, port: int) -> str:
    where = f"{host}:{port}"
    setting, mode = context.setting, context.mode
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or _reason(exc)
        if exc.verify_code in _HOST_MISMATCH:
            return (
                f"{setting}: the certificate of the server at {where} does not name the host"
                f" ({reason}); {setting}.mode verify_identity checks the host name: connect by"
                " a name or address the certificate carries (subjectAltName), or use"
                " verify_ca"
            )
        return (
            f"{setting}: the certificate of the server at {where} failed verification against"
            f" {setting}.ca {context.ca} ({reason}; mode {mode}): is {context.ca} the CA that"
            " signed the server's certificate?"
        )
    return (
        f"{setting}: the TLS handshake with the server at {where} failed ({_reason(exc)};"
        f" {setting}.mode {mode})"
    )


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).lower().replace("_", " ")
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def session_tls(conn: Any) -> str:
    """Protocol and cipher of a connection as the server sees them (e.g. ``TLSv1.3
    TLS_AES_256_GCM_SHA384``), or "" when it is not encrypted."""
    with conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_version', 'Ssl_cipher')")
        rows = cur.fetchall()
    status = {str(row[0]).lower(): str(row[1] or "") for row in rows}
    version, cipher = status.get("ssl_version", ""), status.get("ssl_cipher", "")
    return f"{version} {cipher}" if cipher else ""


def describe(conn: Any, tls: TlsConfig, setting: str) -> tuple[str, bool, str]:
    """The ``ferry check`` line (what, ok, fix) of a connection's TLS, from the server's view.

    E.g. ``source TLS: TLSv1.3 TLS_AES_256_GCM_SHA384 (verify_identity)``. Under
    preferred and required the line is a warning (ok, with a fix): nothing is
    verified, or nothing is encrypted.
    """
    encrypted = session_tls(conn)
    who = setting.split(".", 1)[0]
    if encrypted:
        what = f"{who} TLS: {encrypted} ({tls.mode})"
        if tls.mode in VERIFY_MODES:
            return what, True, ""
        return (
            what,
            True,
            f"the server's certificate is not verified; set {setting}.mode:"
            f" verify_identity and {setting}.ca to know who you talk to",
        )
    if tls.mode == "disabled":
        return f"{who} TLS: not encrypted (mode disabled)", True, ""
    return (
        f"{who} TLS: not encrypted (mode {tls.mode}: the server offers no TLS)",
        True,
        "credentials and rows cross the network in clear text; enable TLS on the"
        f" server and set {setting}.mode: verify_identity with {setting}.ca",
    )
