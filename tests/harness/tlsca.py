"""A throwaway TLS certificate authority for tests: a CA (``TestCA``) that signs server
certificates for the names and addresses a test reaches, as PEM text or files. Nothing is
trusted system-wide; a test passes the CA to its client explicitly (a ``caBundle`` value,
``ca_certs``, ``--cacert``)."""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ServerCert:
    ca: Path  # the CA certificate, for clients
    cert: Path  # server certificate (PEM)
    key: Path  # server private key (PEM, unencrypted)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class TestCA:
    """A CA key and certificate; ``issue`` signs server certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, name: str = "hpchub test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        """The CA certificate: what an operator puts in a caBundle value."""
        return _pem(self.cert)

    def issue(self, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> tuple[str, str]:
        """(certificate PEM, private key PEM) of a server known by ``hosts`` (IPs or names)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        sans: list[x509.GeneralName] = []
        for h in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                sans.append(x509.DNSName(h))
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(hosts[0]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=12))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return _pem(cert), key_pem

    def server_context(
        self, workdir: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    ) -> ssl.SSLContext:
        """A TLS server context presenting a certificate this CA signed for ``hosts``."""
        cert, key = self.issue(hosts)
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "server.crt").write_text(cert)
        (workdir / "server.key").write_text(key)
        (workdir / "server.key").chmod(0o600)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(workdir / "server.crt", workdir / "server.key")
        return ctx


def make_server_cert(directory: Path, names: list[str], ca_name: str = "hpchub test CA") -> ServerCert:
    """A new CA and a certificate it signs for ``names`` (DNS names or IP addresses)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = TestCA(ca_name)
    cert, key = ca.issue(tuple(names))
    out = ServerCert(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    out.ca.write_text(ca.pem)
    out.cert.write_text(cert)
    out.key.write_text(key)
    out.key.chmod(0o600)
    return out
