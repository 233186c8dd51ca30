"""TLS certificates and SuperNode key pairs for a Flower deployment.

A private certificate authority signs the SuperLink's server certificate; SuperNodes
and ``flwr`` verify the SuperLink with the CA certificate alone (``ca.crt``), so the
CA key can stay offline. SuperNode authentication uses one EC P-384 key pair per node
in OpenSSH format, which is what Flower 1.42 reads (``flwr supernode register`` takes
the public key, ``flower-supernode --auth-supernode-private-key`` the private one).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CA_CERT, SERVER_CERT, SERVER_KEY = "ca.crt", "server.pem", "server.key"
CA_KEY = "ca.key"  # only needed to sign a new server certificate; keep it off the server
VALID_DAYS = 365


@dataclass(frozen=True)
class Certificates:
    ca_cert: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fedkd"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _subject_alt_names(hosts: list[str]) -> x509.SubjectAlternativeName:
    """IP addresses as IP entries, everything else as DNS names (gRPC checks either)."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey,
               fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()))
    path.chmod(0o600)


def make_certificates(folder: Path, hosts: list[str]) -> Certificates:
    """A CA and a server certificate for ``hosts`` (the names or IPs SuperNodes dial), in ``folder``."""
    if not hosts:
        raise ValueError("at least one host name or IP address is needed for the server certificate")
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)

    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name("fedkd CA")).issuer_name(_name("fedkd CA"))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                            content_commitment=False, key_encipherment=False,
                                            data_encipherment=False, key_agreement=False,
                                            encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA384()))

    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (x509.CertificateBuilder().subject_name(_name(hosts[0])).issuer_name(ca_cert.subject)
                   .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(_subject_alt_names(hosts), critical=False)
                   .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                                  critical=False)
                   .sign(ca_key, hashes.SHA384()))

    certs = Certificates(folder / CA_CERT, folder / SERVER_CERT, folder / SERVER_KEY)
    certs.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    certs.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    _write_key(folder / CA_KEY, ca_key)
    _write_key(certs.server_key, server_key)
    return certs


def make_node_key(folder: Path, name: str) -> tuple[Path, Path]:
    """``<name>`` (private) and ``<name>.pub`` (public), an EC P-384 pair in OpenSSH format."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = folder / name, folder / f"{name}.pub"
    _write_key(private, key, serialization.PrivateFormat.OpenSSH)
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                     serialization.PublicFormat.OpenSSH) + b"\n")
    return private, public
