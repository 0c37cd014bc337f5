"""Certificates made at test time with the openssl command line (no private key is committed):
a CA, a server certificate for localhost, 127.0.0.1 and ::1, client certificates from that CA
and from another one, and a second server certificate to reload."""
import dataclasses
import pathlib
import subprocess


@dataclasses.dataclass
class PKI:
    ca: pathlib.Path
    server_cert: pathlib.Path
    server_key: pathlib.Path
    renewed_cert: pathlib.Path  # the same key, another serial and subject: for SIGHUP reloads
    client_cert: pathlib.Path  # CN=kubelet,O=system:nodes, signed by `ca`
    client_key: pathlib.Path
    stranger_cert: pathlib.Path  # signed by another CA
    stranger_key: pathlib.Path
    other_ca: pathlib.Path


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_key(path: pathlib.Path) -> None:
    openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))


def make_ca(directory: pathlib.Path, name: str, subject: str) -> tuple[pathlib.Path, pathlib.Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    make_key(key)
    openssl("req", "-x509", "-key", str(key), "-out", str(cert), "-days", "2", "-subj", subject,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def issue(directory: pathlib.Path, name: str, subject: str, extensions: str, ca: tuple, key: pathlib.Path | None = None) -> tuple:
    key = key or directory / f"{name}.key"
    if not key.exists():
        make_key(key)
    csr, cert, ext = directory / f"{name}.csr", directory / f"{name}.crt", directory / f"{name}.ext"
    ext.write_text(extensions)
    openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", subject)
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
            "-out", str(cert), "-days", "2", "-extfile", str(ext))
    return cert, key


def make_pki(directory: pathlib.Path) -> PKI:
    ca = make_ca(directory, "ca", "/CN=ExecStream test CA")
    other = make_ca(directory, "other-ca", "/CN=Somebody else's CA")
    server_ext = "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n"
    client_ext = "extendedKeyUsage=clientAuth\n"
    server_cert, server_key = issue(directory, "server", "/CN=execstream-server", server_ext, ca)
    renewed_cert, _ = issue(directory, "renewed", "/CN=execstream-server-renewed", server_ext, ca, key=server_key)
    client_cert, client_key = issue(directory, "client", "/O=system:nodes/CN=kubelet", client_ext, ca)
    stranger_cert, stranger_key = issue(directory, "stranger", "/CN=stranger", client_ext, other)
    return PKI(ca[0], server_cert, server_key, renewed_cert, client_cert, client_key, stranger_cert, stranger_key, other[0])
