"""Throwaway certificates for the TLS tests: a CA, a service certificate for 127.0.0.1 /
localhost signed by it, a client certificate signed by it, and a client certificate from a
foreign CA. EC P-256 keys: generating them takes milliseconds, unlike RSA."""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pair:
    cert: Path
    key: Path

    def read(self) -> tuple[bytes, bytes]:
        """(private key, certificate chain) PEM bytes, as grpc.ssl_channel_credentials wants."""
        return self.key.read_bytes(), self.cert.read_bytes()


@dataclass(frozen=True)
class Pki:
    ca: Path  # the suite's CA certificate (MIANDAN_TLS_CA)
    service: Pair  # a service's certificate: serves 127.0.0.1/localhost and is its client cert
    client: Pair  # another internal caller's certificate, signed by the same CA
    foreign_ca: Path
    foreign_client: Pair  # a client certificate from a CA the suite does not trust


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "miandan-test"), x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], cn: str, sans: list[x509.GeneralName], usages: list
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = _ca("miandan test CA")
    foreign = _ca("someone else's CA")
    # The name the clients dial (127.0.0.1, or localhost) is in the SANs, so no
    # grpc.ssl_target_name_override is needed. Serving and calling other services with the same
    # certificate is how the suite runs (one MIANDAN_TLS_CERT per process), hence both usages.
    service = _leaf(
        ca, "miandan-service",
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
    )
    client = _leaf(ca, "lottery", [x509.DNSName("lottery.miandan.internal")], [ExtendedKeyUsageOID.CLIENT_AUTH])
    foreign_client = _leaf(foreign, "lottery", [x509.DNSName("lottery.miandan.internal")], [ExtendedKeyUsageOID.CLIENT_AUTH])

    def pair(name: str, leaf: tuple[x509.Certificate, ec.EllipticCurvePrivateKey]) -> Pair:
        p = Pair(directory / f"{name}.pem", directory / f"{name}.key")
        _write_cert(leaf[0], p.cert)
        _write_key(leaf[1], p.key)
        return p

    _write_cert(ca[0], directory / "ca.pem")
    _write_cert(foreign[0], directory / "foreign-ca.pem")
    return Pki(
        ca=directory / "ca.pem",
        service=pair("service", service),
        client=pair("client", client),
        foreign_ca=directory / "foreign-ca.pem",
        foreign_client=pair("foreign-client", foreign_client),
    )


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")
