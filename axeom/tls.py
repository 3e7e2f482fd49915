"""TLS for ``wss://``: the one place a server's ``ssl.SSLContext`` is built.

Every process that runs TLS (the single process of ``--workers 0``, each
worker of ``--workers N``) builds its context once, at start, from the same
four settings (uvicorn's names: ``--ssl-certfile``, ``--ssl-keyfile``,
``--ssl-keyfile-password``, ``--ssl-ca-certs``). ``axeom run`` builds it
once more before any process starts, only to check the files, so that a
missing file, a wrong password or a key that does not match its certificate
is one line naming the option, not a crashed child.

Only the standard library: the configuration module checks with it too.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["TLSError", "TLSSettings", "server_context"]

# Older protocol versions are deprecated (RFC 8996); every WebSocket client
# of the last decade speaks TLS 1.2.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
# The only protocol served over the connection before the upgrade: an ALPN
# client asking for h2 only is refused at the TLS handshake, not misread.
ALPN_PROTOCOLS = ["http/1.1"]


class TLSError(ValueError):
    """A TLS setting that cannot be used; ``option`` names the setting to fix
    (``ssl_certfile``, ``ssl_keyfile``, ...), the message says why."""

    def __init__(self, option: str, detail: str) -> None:
        super().__init__(option, detail)
        self.option = option
        self.detail = detail

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True, slots=True)
class TLSSettings:
    """The four settings, as the configuration carries them to each process.

    certfile: PEM certificate chain (the server's certificate first); it may
        hold the private key too, and then ``keyfile`` is not needed.
    keyfile: PEM private key of the certificate.
    password: of an encrypted ``keyfile``.
    ca_certs: PEM bundle of the authorities client certificates must be
        signed by; when given, every client must present one (mutual TLS).
    """

    certfile: str
    keyfile: str | None = None
    password: str | None = None
    ca_certs: str | None = None


def server_context(settings: TLSSettings) -> ssl.SSLContext:
    """A server-side context for ``settings``; ``TLSError`` naming the setting
    at fault when a file is missing, unreadable, not PEM, the password is
    wrong or the key does not belong to the certificate."""
    _readable("ssl_certfile", settings.certfile)
    if settings.keyfile is not None:
        _readable("ssl_keyfile", settings.keyfile)
    if settings.ca_certs is not None:
        _readable("ssl_ca_certs", settings.ca_certs)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    _load_chain(context, settings)
    if settings.ca_certs is not None:
        try:
            context.load_verify_locations(cafile=settings.ca_certs)
        except ssl.SSLError as exc:
            raise TLSError(
                "ssl_ca_certs", f"{settings.ca_certs!r} holds no usable PEM certificate ({exc})"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _readable(option: str, path: str) -> None:
    if not os.path.isfile(path):
        raise TLSError(option, f"{path!r}: no such file")
    if not os.access(path, os.R_OK):
        raise TLSError(option, f"{path!r}: not readable (permissions)")


def _load_chain(context: ssl.SSLContext, settings: TLSSettings) -> None:
    """Load certificate and key. OpenSSL reports most causes as one "PEM lib"
    error, so the files are looked at first to say which one is wrong."""
    key_option = "ssl_keyfile" if settings.keyfile is not None else "ssl_certfile"
    key_path = settings.keyfile or settings.certfile
    if _CERTIFICATE not in _text("ssl_certfile", settings.certfile):
        raise TLSError("ssl_certfile", f"{settings.certfile!r} holds no PEM certificate")
    key_text = _text(key_option, key_path)
    if _KEY not in key_text:
        if settings.keyfile is None:
            raise TLSError("ssl_keyfile", f"{key_path!r} holds no private key: give its key file")
        raise TLSError(key_option, f"{key_path!r} holds no PEM private key")
    encrypted = any(marker in key_text for marker in _ENCRYPTED)
    if encrypted and not settings.password:
        raise TLSError(
            "ssl_keyfile_password", f"the private key {key_path!r} is encrypted: give its password"
        )
    try:
        context.load_cert_chain(settings.certfile, settings.keyfile, password=_password(settings))
    except ssl.SSLError as exc:
        if "KEY_VALUES_MISMATCH" in (exc.reason or ""):
            raise TLSError(
                key_option,
                f"the private key {key_path!r} does not match the certificate "
                f"{settings.certfile!r}",
            ) from None
        if encrypted:
            raise TLSError(
                "ssl_keyfile_password", f"wrong password for the private key {key_path!r}"
            ) from None
        raise TLSError(key_option, f"cannot load the certificate and key: {exc}") from None


def _password(settings: TLSSettings) -> Callable[[], bytes]:
    """What OpenSSL asks for an encrypted key: never the terminal (a server has none)."""
    password = (settings.password or "").encode()
    return lambda: password


def _text(option: str, path: str) -> str:
    try:
        with open(path, encoding="latin-1") as stream:
            return stream.read(MAX_PEM_SIZE)
    except OSError as exc:
        raise TLSError(option, f"{path!r}: {exc.strerror or exc}") from None


# Markers of PEM blocks: a certificate, a private key (any kind), an encrypted one.
_CERTIFICATE = "-----BEGIN CERTIFICATE-----"
_KEY = "PRIVATE KEY-----"
_ENCRYPTED = ("-----BEGIN ENCRYPTED PRIVATE KEY-----", "Proc-Type: 4,ENCRYPTED")
# A PEM chain with its key is a few KiB; a file this large is not one.
MAX_PEM_SIZE = 1 << 20
