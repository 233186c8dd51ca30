"""TLS certificates and SuperNode keys in the formats Flower reads."""

import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedkd.runtime.credentials import make_certificates, make_node_key
from tests.helpers import load_script


def test_the_server_certificate_is_signed_by_the_ca_for_the_given_hosts(tmp_path):
    certs = make_certificates(tmp_path, ["10.0.0.5", "fl-server.local"])
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(certs.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert names.get_values_for_type(x509.DNSName) == ["fl-server.local"]
    key = serialization.load_pem_private_key(certs.server_key.read_bytes(), None)
    assert key.public_key().public_numbers() == server.public_key().public_numbers()
    assert certs.server_key.stat().st_mode & 0o077 == 0
    with pytest.raises(ValueError, match="at least one host"):
        make_certificates(tmp_path / "none", [])


def test_node_keys_are_ec_p384_openssh_pairs(tmp_path):
    private, public = make_node_key(tmp_path, "device0")
    key = serialization.load_ssh_private_key(private.read_bytes(), None)
    pub = serialization.load_ssh_public_key(public.read_bytes())
    assert isinstance(pub, ec.EllipticCurvePublicKey) and pub.curve.name == "secp384r1"
    assert key.public_key().public_numbers() == pub.public_numbers()


def test_the_script_never_overwrites_existing_credentials(tmp_path, capsys):
    run = load_script("credentials").main
    assert run(["certs", "--host", "127.0.0.1", "--out", str(tmp_path)]) == 0
    before = (tmp_path / "ca.crt").read_bytes()
    with pytest.raises(SystemExit) as exit_:
        run(["certs", "--host", "127.0.0.1", "--out", str(tmp_path)])
    assert exit_.value.code == 2 and "already exist" in capsys.readouterr().err
    assert (tmp_path / "ca.crt").read_bytes() == before
    assert run(["node-key", "--name", "d1", "--out", str(tmp_path / "keys")]) == 0
    assert (tmp_path / "keys" / "d1.pub").exists()
