"""TLS certificates for a SuperLink: a private CA and a server certificate it signs.

Flower's SuperLink serves its Fleet, Control and Runtime APIs over HTTPS when given
``--ssl-ca-certfile/--ssl-certfile/--ssl-keyfile``; SuperNodes (``--root-certificates``) and
the ``flwr`` CLI (``root-certificates`` in the connection) trust the CA.  The certificate
must name the address the others dial (DNS names and IP addresses, as subject alternative
names), or TLS verification fails.  Generated with the ``cryptography`` package (a Flower
dependency), so no ``openssl`` binary is needed; README "Run across machines" gives the
equivalent openssl commands.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOSTS = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Certificates:
    """Paths of the PEM files: give ``ca`` to every party, ``cert`` and ``key`` to the SuperLink only."""

    ca: Path
    cert: Path
    key: Path

    def superlink_args(self) -> list[str]:
        return ["--ssl-ca-certfile", str(self.ca), "--ssl-certfile", str(self.cert), "--ssl-keyfile", str(self.key)]


def _write(path: Path, data: bytes, private: bool = False) -> None:
    """Write atomically; private keys readable by their owner only."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _san(hosts: tuple[str, ...]):
    from cryptography import x509

    names = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def write_certificates(out_dir: str | Path, hosts: tuple[str, ...] | list[str] = DEFAULT_HOSTS,
                       days: int = 365) -> Certificates:
    """Write ``ca.crt``, ``server.pem`` and ``server.key`` (ECDSA P-256) under ``out_dir``.

    ``hosts``: every name or IP address SuperNodes and the CLI use to reach the SuperLink.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    hosts = tuple(hosts)
    if not hosts:
        raise ValueError("hosts: give at least one DNS name or IP address of the SuperLink")
    if days < 1:
        raise ValueError(f"days must be >= 1, got {days}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)  # tolerate small clock skew
    until = now + dt.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedsim federation CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = Certificates(out / "ca.crt", out / "server.pem", out / "server.key")
    pem = serialization.Encoding.PEM
    _write(paths.ca, ca_cert.public_bytes(pem))
    _write(paths.cert, cert.public_bytes(pem))
    _write(paths.key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
           private=True)
    return paths  # the CA's private key is not kept: nothing else can be signed with it
