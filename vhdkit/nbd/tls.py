"""TLS for the NBD export: the server's context, from files or from a folder laid out as QEMU's
tls-creds-x509 wants, and the client certificate's name for ``--tls-allow`` (specs/nbd.md)."""

from __future__ import annotations

import os
import ssl
from typing import Any


def common_name(certificate: dict[str, Any] | None) -> str | None:
    """The subject's commonName of a certificate as ssl.getpeercert() gives it."""
    for rdn in (certificate or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None


def tls_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    """A server TLS context: this server's certificate and key, and the CA whose certificates
    clients must present (TLS 1.2 at least)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def tls_context_from_dir(folder: str) -> ssl.SSLContext:
    """``tls_context`` from a folder laid out as QEMU's tls-creds-x509 (endpoint=server) wants:
    ca-cert.pem, server-cert.pem, server-key.pem."""
    return tls_context(os.path.join(folder, "server-cert.pem"), os.path.join(folder, "server-key.pem"),
                       os.path.join(folder, "ca-cert.pem"))
