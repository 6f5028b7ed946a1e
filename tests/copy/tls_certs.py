"""Test certificates for NBD over TLS, made with ``cryptography`` (smbprotocol's dependency):
a CA, a server certificate for 127.0.0.1/localhost, client certificates, laid out in folders as
QEMU's tls-creds-x509 and libnbd's tls-certificates expect them."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

_USAGE = dict(content_commitment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
              decipher_only=False)


class Authority:
    def __init__(self, name: str) -> None:
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = self._sign(name, self.key, ca=True)

    def _sign(self, subject: str, key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
              san: list[x509.GeneralName] | None = None) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        usage = x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca, key_encipherment=not ca, **_USAGE)
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, self.name)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=7))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(usage, critical=True))
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def folder(self, where: Path, role: str, common_name: str) -> Path:
        """``where`` with ca-cert.pem and ``role``-cert.pem / ``role``-key.pem (role: server or client)."""
        key = ec.generate_private_key(ec.SECP256R1())
        san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))] if role == "server" else None
        cert = self._sign(common_name, key, san=san)
        where.mkdir(parents=True, exist_ok=True)
        (where / "ca-cert.pem").write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        (where / f"{role}-cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (where / f"{role}-key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                                                  serialization.NoEncryption()))
        (where / f"{role}-key.pem").chmod(0o600)
        return where
