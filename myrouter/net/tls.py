"""TLS for the client port: the certificate files and the server's ``ssl.SSLContext``.

As ProxySQL does with its datadir, myrouter keeps three PEM files in ``datadir``:

    myrouter-ca.pem     the CA that signed the certificate (give it to clients to verify)
    myrouter-cert.pem   the proxy's certificate
    myrouter-key.pem    its private key (mode 0600)

Files that exist are used as they are: an operator replaces them with certificates of their
own CA and runs ``PROXYSQL RELOAD TLS``. Missing ones are generated at startup (a 10-year
self-signed CA and a certificate for localhost, 127.0.0.1 and ::1 signed by it; the CA's
key is not kept). Without a ``datadir`` the generated files live in memory only, for this
process: traffic is encrypted, but clients cannot verify the proxy.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("myrouter")

CA_FILE = "myrouter-ca.pem"
CERT_FILE = "myrouter-cert.pem"
KEY_FILE = "myrouter-key.pem"
_VALID_DAYS = 3650


class TLSSetupError(Exception):
    """The certificate files cannot be read, written or used."""


@dataclass(frozen=True)
class TLSFiles:
    ca: bytes
    cert: bytes
    key: bytes
    directory: Path | None  # None: generated in memory for this process


def _generate() -> tuple[bytes, bytes, bytes]:
    """A fresh CA and a server certificate signed by it: (ca_pem, cert_pem, key_pem)."""
    from cryptography import x509  # loaded when first needed: only to generate missing certificates
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=_VALID_DAYS)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "myrouter auto-generated CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "myrouter")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"),
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1")),
        ]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    return ca.public_bytes(pem), cert.public_bytes(pem), key_pem


_in_memory: tuple[bytes, bytes, bytes] | None = None


def load_or_create(directory: Path | None) -> TLSFiles:
    """The CA, certificate and key: read from ``directory``, generated where missing."""
    global _in_memory
    if directory is None:
        if _in_memory is None:
            _in_memory = _generate()
            log.info("TLS: no datadir set; using a certificate generated for this process "
                     "(clients cannot verify it: set datadir to keep and publish one)")
        return TLSFiles(*_in_memory, directory=None)
    paths = [directory / CA_FILE, directory / CERT_FILE, directory / KEY_FILE]
    try:
        present = [p.exists() for p in paths]
        if not any(present):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            for path, data in zip(paths, _generate()):
                _write_new(path, data, 0o600 if path.name == KEY_FILE else 0o644)
            log.info("TLS: generated %s, %s and %s in %s", CA_FILE, CERT_FILE, KEY_FILE, directory)
        elif not all(present):
            missing = ", ".join(p.name for p, ok in zip(paths, present) if not ok)
            raise TLSSetupError(f"{directory}: {missing} missing (the others exist): "
                                "add the missing file(s), or remove all three to have them generated")
        ca, cert, key = (p.read_bytes() for p in paths)
    except OSError as exc:
        raise TLSSetupError(f"TLS files in {directory}: {exc}") from exc
    return TLSFiles(ca, cert, key, directory)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """The client port's context: TLS 1.2 or later, the certificate chain of ``files``."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    # load_cert_chain reads files only: hand it the PEM text through a private temporary file
    with tempfile.TemporaryDirectory(prefix="myrouter-tls-") as tmp:
        chain = Path(tmp) / "chain.pem"
        _write_new(chain, files.cert + b"\n" + files.key, 0o600)
        try:
            ctx.load_cert_chain(chain)
        except (ssl.SSLError, ValueError) as exc:
            where = files.directory or "generated certificate"
            raise TLSSetupError(f"{where}: {CERT_FILE} and {KEY_FILE} are not a usable certificate and "
                                f"key pair: {exc}") from exc
    return ctx
