"""TLS for tests: a self-signed certificate for 127.0.0.1/localhost, daphne's own TLS endpoint,
and nginx in front of daphne workers: terminating TLS (deploy/nginx-tls.conf) or plain HTTP
(deploy/nginx.conf)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from project.serving import DAPHNE_FLAGS
from tests.support.processes import ROOT, DaphneServer, ManagedProcess, free_port, wait_until

NGINX_CONF = ROOT / "deploy" / "nginx.conf"
NGINX_TLS_CONF = ROOT / "deploy" / "nginx-tls.conf"

# The test nginx's access log: which upstreams each request tried, and what each answered
# ("127.0.0.1:8001, 127.0.0.1:8002" with "403, 101": refused by one, taken by the next).
ACCESS_LOG_FORMAT = '$remote_addr "$request" $status upstream=$upstream_addr upstream_status=$upstream_status'


@dataclass(frozen=True)
class SelfSignedCert:
    """A certificate and its key as PEM files in ``dir``, valid for 127.0.0.1 and localhost."""

    dir: Path
    cert_path: Path
    key_path: Path

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate only, with host name checks on."""
        return ssl.create_default_context(cafile=str(self.cert_path))

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def self_signed_cert(days: int = 2) -> SelfSignedCert:
    """Write a fresh self-signed certificate and key into a new temp dir (``cleanup()`` removes it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory = Path(tempfile.mkdtemp(prefix="ripple-tls-"))
    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return SelfSignedCert(dir=directory, cert_path=cert_path, key_path=key_path)


def https_ok(url: str, context: ssl.SSLContext | None) -> bool:
    """True when ``url`` answers 200 (over TLS verified with ``context``, for https://)."""
    try:
        with urllib.request.urlopen(url, timeout=1, context=context) as response:
            return response.status == 200
    except OSError:
        return False


def _exit_code(process: ManagedProcess) -> int | None:
    return process.proc.returncode if process.proc is not None else None


class TlsDaphneServer(DaphneServer):
    """daphne with only a TLS endpoint (``-e ssl:PORT:privateKey=...:certKey=...``) on 127.0.0.1."""

    def __init__(self, env: dict[str, str], cert: SelfSignedCert, port: int | None = None) -> None:
        super().__init__(env, port=port)
        self.cert = cert
        self.argv = [
            self.argv[0],
            "-m",
            "project.serve",
            "-e",
            f"ssl:{self.port}:privateKey={cert.key_path}:certKey={cert.cert_path}:interface=127.0.0.1",
            *DAPHNE_FLAGS,
            "project.asgi:application",
        ]

    @property
    def http_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.port}"

    def _healthy(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"daphne exited with {_exit_code(self)}:\n{self.output()}")
        return https_ok(f"{self.http_url}/healthz", self.cert.client_context())


def nginx_binary() -> str | None:
    """nginx from PATH (Debian puts it in /usr/sbin, which a non-root PATH may lack)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def _replace(pattern: str, replacement: str, text: str, *, source: Path, count: int = 0) -> str:
    """``re.sub`` over a deploy/ nginx file that fails when the file no longer has ``pattern``."""
    result, found = re.subn(pattern, replacement, text, count=count, flags=re.MULTILINE)
    if not found:
        raise AssertionError(
            f"deploy/{source.name} has no line matching {pattern!r}: update tests/support/tls.py"
        )
    return result


# A server line of the upstream block, and the options it carries (max_fails=3 fail_timeout=10s).
_UPSTREAM_SERVER = r"^\s*server\s+\S+:\d+(?P<options>\s[^;]*)?;$"


def _upstreams(site: str, ports: Sequence[int], *, source: Path) -> str:
    """The upstream block's server lines replaced by one per port on 127.0.0.1, where the first
    one was, each with that line's options."""
    first = re.search(_UPSTREAM_SERVER + r"\n", site, flags=re.MULTILINE)
    if first is None:
        raise AssertionError(f"deploy/{source.name} has no upstream server line: update tests/support/tls.py")
    options = first.group("options") or ""
    servers = "".join(f"    server 127.0.0.1:{port}{options};\n" for port in ports)
    after = re.sub(_UPSTREAM_SERVER + r"\n", "", site[first.end() :], flags=re.MULTILINE)
    return site[: first.start()] + servers + after


def nginx_test_config(
    *,
    upstream_port: int | None = None,
    upstream_ports: Sequence[int] = (),
    http_port: int,
    work_dir: Path,
    https_port: int | None = None,
    cert: SelfSignedCert | None = None,
) -> str:
    """A deploy/ nginx file on loopback test ports in front of the daphnes on ``upstream_port``
    and ``upstream_ports``, wrapped in a main config that keeps every file in ``work_dir``.

    With ``cert``: deploy/nginx-tls.conf, HTTPS on ``https_port`` with the test certificate and
    the redirect on ``http_port``. Without: deploy/nginx.conf, plain HTTP on ``http_port``.
    """
    ports = [*([upstream_port] if upstream_port is not None else []), *upstream_ports]
    if not ports:
        raise ValueError("at least one upstream port")
    source = NGINX_CONF if cert is None else NGINX_TLS_CONF
    site = source.read_text()
    site = _upstreams(site, ports, source=source)
    site = _replace(r"^\s*listen\s+\[::\]:\d+.*;$", "", site, source=source)
    if cert is not None:
        if https_port is None:
            raise ValueError("https_port is needed with a certificate")
        site = _replace(
            r"^(\s*)listen\s+443\s+ssl(.*);$", rf"\1listen 127.0.0.1:{https_port} ssl\2;", site, source=source
        )
        site = _replace(r"^(\s*ssl_certificate)\s+\S+;$", rf"\1 {cert.cert_path};", site, source=source)
        site = _replace(r"^(\s*ssl_certificate_key)\s+\S+;$", rf"\1 {cert.key_path};", site, source=source)
    site = _replace(r"^(\s*)listen\s+80(\s.*)?;$", rf"\1listen 127.0.0.1:{http_port}\2;", site, source=source)
    site = _replace(r"^(\s*alias)\s+\S+;$", rf"\1 {work_dir / 'static'}/;", site, source=source)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {work_dir / 'temp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return (
        f"worker_processes 1;\n"
        f"error_log {work_dir / 'error.log'} info;\n"
        f"events {{ worker_connections 256; }}\n"
        f"http {{\n"
        f"    log_format upstreams '{ACCESS_LOG_FORMAT}';\n"
        f"    access_log {work_dir / 'access.log'} upstreams;\n"
        f"{temp_paths}\n"
        f"{site}\n"
        f"}}\n"
    )


class NginxServer(ManagedProcess):
    """nginx in the foreground (``daemon off``) in front of daphne workers: deploy/nginx-tls.conf
    with ``cert``, deploy/nginx.conf (plain HTTP and ws://) without."""

    def __init__(
        self,
        *,
        upstream_port: int | None = None,
        upstream_ports: Sequence[int] = (),
        cert: SelfSignedCert | None = None,
        https_port: int | None = None,
        http_port: int | None = None,
    ) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed (apt-get install nginx)")
        self.cert = cert
        self.https_port = (https_port or free_port()) if cert is not None else None
        self.http_port = http_port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="ripple-nginx-"))
        try:
            # Workers drop root for "nobody" and must reach their temp dirs.
            self.dir.chmod(0o755)
            (self.dir / "static").mkdir()
            (self.dir / "temp").mkdir()
            self.conf = self.dir / "nginx.conf"
            self.conf.write_text(
                nginx_test_config(
                    upstream_port=upstream_port,
                    upstream_ports=upstream_ports,
                    https_port=self.https_port,
                    http_port=self.http_port,
                    cert=cert,
                    work_dir=self.dir,
                )
            )
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise
        super().__init__(
            f"nginx-{self.https_port or self.http_port}",
            [
                binary,
                "-p",
                str(self.dir),
                "-e",
                str(self.dir / "error.log"),
                "-c",
                str(self.conf),
                "-g",
                f"daemon off; pid {self.dir / 'nginx.pid'};",
            ],
            env={**os.environ},
        )

    @property
    def https_url(self) -> str:
        if self.https_port is None:
            raise AttributeError("this nginx serves plain HTTP only (no cert was given)")
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def wss_url(self) -> str:
        if self.https_port is None:
            raise AttributeError("this nginx serves plain HTTP only (no cert was given)")
        return f"wss://127.0.0.1:{self.https_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def ws_url(self) -> str:
        """ws:// through the plain HTTP port (with a cert, that port only redirects)."""
        return f"ws://127.0.0.1:{self.http_port}"

    def check_config(self) -> None:
        """``nginx -t`` on the generated config; raises with nginx's own words when it is refused."""
        result = subprocess.run([*self.argv, "-t"], capture_output=True, text=True, timeout=30, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"nginx -t refused {self.conf}:\n{result.stderr}\n{self.conf.read_text()}")

    def start(self) -> None:
        self.check_config()
        super().start()
        wait_until(
            self._healthy,
            timeout_s=15,
            what=f"nginx on port {self.https_port or self.http_port} to proxy /healthz",
        )

    def output(self) -> str:
        error_log = self.dir / "error.log"
        logged = error_log.read_text(errors="replace") if error_log.exists() else ""
        return f"{super().output()}\n--- error.log ---\n{logged}"

    def access_log(self) -> list[str]:
        """The access log's lines so far (ACCESS_LOG_FORMAT: the upstreams each request tried)."""
        path = self.dir / "access.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def _healthy(self) -> bool:
        if not self.alive():
            raise RuntimeError(f"nginx exited with {_exit_code(self)}:\n{self.output()}")
        if self.cert is None:
            return https_ok(f"{self.http_url}/healthz", None)
        return https_ok(f"{self.https_url}/healthz", self.cert.client_context())

    def cleanup(self) -> None:
        super().cleanup()
        shutil.rmtree(self.dir, ignore_errors=True)
