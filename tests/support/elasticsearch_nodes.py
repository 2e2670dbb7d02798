"""Secured Elasticsearch nodes started by the tests themselves, as production runs them:
security on, TLS on HTTP and transport with certificates made here (`cryptography`), the
`elastic` user's password set through the node's own keystore tool (`bootstrap.password`).

They come from the distribution `make test` caches (scripts/services.sh exports
SLUICE_ES_HOME and SLUICE_ES_JAVA_HOME), run as the unprivileged service user when we are
root (Elasticsearch refuses root), on free loopback ports, with a small heap; `boot`
starts several at once and waits for all, so a cluster costs one boot's time.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import ipaddress
import os
import pwd
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SERVICE_USER = os.environ.get("SLUICE_SERVICE_USER", "sluice")
HEAP = "-Xms256m -Xmx256m"
BOOT_SECONDS = 240


def distribution() -> tuple[Path, Path] | str:
    """(Elasticsearch home, Java home), or why there is none."""
    home = os.environ.get("SLUICE_ES_HOME")
    java = os.environ.get("SLUICE_ES_JAVA_HOME") or os.environ.get("ES_JAVA_HOME")
    if not home or not java:
        return "SLUICE_ES_HOME/SLUICE_ES_JAVA_HOME unset (scripts/test.sh sets them)"
    if not (Path(home) / "bin" / "elasticsearch").exists():
        return f"no Elasticsearch distribution at {home}"
    return Path(home), Path(java)


def free_port() -> int:
    """A free port below the kernel's ephemeral range (as scripts/common.sh picks them):
    one the kernel hands out can be taken by an outgoing connection before the node,
    which binds seconds later, gets it."""
    high = 32767
    with contextlib.suppress(OSError, ValueError):
        high = min(
            high, int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) - 1
        )
    for _ in range(500):
        port = random.randint(20000, high)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


# -- certificates ----------------------------------------------------------------------
def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@dataclass
class Authority:
    """A CA, and the node certificate it signed (for 127.0.0.1 and localhost)."""

    ca_pem: bytes
    node_cert_pem: bytes
    node_key_pem: bytes

    @classmethod
    def make(cls, label: str) -> Authority:
        now = datetime.datetime.now(datetime.UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name(f"Sluice test CA {label}"))
            .issuer_name(_name(f"Sluice test CA {label}"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
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
            .sign(ca_key, hashes.SHA256())
        )
        node_key = ec.generate_private_key(ec.SECP256R1())
        node_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("sluice-test-node"))
            .issuer_name(ca_cert.subject)
            .public_key(node_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )
        return cls(
            ca_pem=ca_cert.public_bytes(serialization.Encoding.PEM),
            node_cert_pem=node_cert.public_bytes(serialization.Encoding.PEM),
            node_key_pem=node_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
        )

    def write_ca(self, path: Path) -> Path:
        path.write_bytes(self.ca_pem)
        return path


# -- nodes -----------------------------------------------------------------------------
def _is_root() -> bool:
    return os.geteuid() == 0


def _ensure_service_user() -> None:
    try:
        pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             SERVICE_USER],
            check=True,
        )  # fmt: skip


def _as_service_user(command: list[str]) -> list[str]:
    if not _is_root():
        return command
    _ensure_service_user()
    return ["runuser", "-u", SERVICE_USER, "--", *command]


def _give_to_service_user(path: Path) -> None:
    if _is_root():
        _ensure_service_user()
        shutil.chown(path, SERVICE_USER)
        for child in path.rglob("*"):
            shutil.chown(child, SERVICE_USER)


@dataclass
class Node:
    name: str
    root: Path
    http_port: int
    transport_port: int
    master: bool
    password: str
    authority: Authority
    home: Path
    java: Path
    launcher: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.http_port}"

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def pid_file(self) -> Path:
        return self.root / "es.pid"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "ES_PATH_CONF": str(self.config),
            "ES_JAVA_HOME": str(self.java),
            "ES_JAVA_OPTS": HEAP,
        }

    def flags(self, seed_hosts: list[str], cluster: str, masters: list[str]) -> list[str]:
        certs = {
            "key": "certs/node.key",
            "certificate": "certs/node.crt",
            "certificate_authorities": "certs/ca.crt",
        }
        settings = {
            "cluster.name": cluster,
            "node.name": self.name,
            "node.roles": "master,data,ingest" if self.master else "data,ingest",
            "network.host": "127.0.0.1",
            "http.port": str(self.http_port),
            "transport.port": str(self.transport_port),
            "discovery.seed_hosts": ",".join(seed_hosts),
            "cluster.initial_master_nodes": ",".join(masters),
            "path.data": str(self.root / "data"),
            "path.logs": str(self.root / "logs"),
            "cluster.routing.allocation.disk.threshold_enabled": "false",
            "xpack.security.enabled": "true",
            "xpack.security.http.ssl.enabled": "true",
            "xpack.security.transport.ssl.enabled": "true",
            "xpack.security.transport.ssl.verification_mode": "certificate",
        }
        for prefix in ("xpack.security.http.ssl", "xpack.security.transport.ssl"):
            for key, value in certs.items():
                settings[f"{prefix}.{key}"] = value
        return [flag for name, value in settings.items() for flag in ("-E", f"{name}={value}")]

    def start(self, seed_hosts: list[str], cluster: str, masters: list[str]) -> None:
        """Launch in the background (`-d`): the launcher exits once the node runs."""
        log = (self.root / "start.log").open("ab")
        command = [str(self.home / "bin" / "elasticsearch"), "-d", "-p", str(self.pid_file)]
        self.launcher = subprocess.Popen(
            _as_service_user(command + self.flags(seed_hosts, cluster, masters)),
            env=self.environment(),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd="/",
        )

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """`kill -9`: no shutdown, as a machine that goes away."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)

    def answers(self) -> bool:
        context = ssl.create_default_context(cadata=self.authority.ca_pem.decode())
        request = urllib.request.Request(
            f"{self.url}/_cluster/health",
            headers={"Authorization": basic_auth("elastic", self.password)},
        )
        try:
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def log_tail(self) -> str:
        lines: list[str] = []
        for path in [self.root / "start.log", *sorted((self.root / "logs").glob("*.log"))]:
            if path.exists():
                lines += path.read_text(errors="replace").splitlines()[-15:]
        return "\n".join(lines[-30:])


def basic_auth(user: str, password: str) -> str:
    return "Basic " + b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class SecuredCluster:
    nodes: list[Node]
    password: str
    authority: Authority
    root: Path
    name: str

    @property
    def urls(self) -> str:
        """ELASTICSEARCH_URL naming every node."""
        return ",".join(node.url for node in self.nodes)

    def seed_hosts(self) -> list[str]:
        return [f"127.0.0.1:{node.transport_port}" for node in self.nodes]

    def masters(self) -> list[str]:
        return [node.name for node in self.nodes if node.master]

    def wait(self, nodes: list[Node]) -> None:
        deadline = time.monotonic() + BOOT_SECONDS
        pending = list(nodes)
        while pending:
            pending = [node for node in pending if not node.answers()]
            for node in pending:
                launcher_failed = node.launcher is not None and node.launcher.poll() not in (
                    None,
                    0,
                )
                if launcher_failed or time.monotonic() > deadline:
                    raise RuntimeError(f"{node.name} did not start:\n{node.log_tail()}")
            if pending:
                time.sleep(0.5)

    def restart(self, node: Node) -> None:
        node.start(self.seed_hosts(), self.name, self.masters())
        self.wait([node])

    def stop(self) -> None:
        atexit.unregister(self.stop)
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def keystore_with_password(home: Path, java: Path, root: Path, password: str) -> Path:
    """An elasticsearch.keystore holding bootstrap.password, made by the node's own tool."""
    config = root / "keystore-config"
    shutil.copytree(home / "config", config)
    _give_to_service_user(config)
    environment = {**os.environ, "ES_PATH_CONF": str(config), "ES_JAVA_HOME": str(java)}
    tool = str(home / "bin" / "elasticsearch-keystore")
    subprocess.run(
        _as_service_user([tool, "add", "-x", "-f", "bootstrap.password"]),
        input=password.encode(),
        env=environment,
        check=True,
        capture_output=True,
        cwd="/",
        timeout=120,
    )
    return config / "elasticsearch.keystore"


def boot(node_count: int, *, masters: int = 1) -> SecuredCluster:
    """Start `node_count` secured nodes of one cluster (the first `masters` of them
    master-eligible) at once, and wait until all answer."""
    found = distribution()
    if isinstance(found, str):
        raise RuntimeError(found)
    home, java = found
    root = Path(tempfile.mkdtemp(prefix="sluice-es-secured-"))
    os.chmod(root, 0o755)
    password = secrets.token_urlsafe(12)
    authority = Authority.make(root.name)
    keystore = keystore_with_password(home, java, root, password)
    nodes: list[Node] = []
    for index in range(node_count):
        node_root = root / f"node-{index}"
        config = node_root / "config"
        shutil.copytree(home / "config", config)
        (config / "certs").mkdir()
        (config / "certs" / "ca.crt").write_bytes(authority.ca_pem)
        (config / "certs" / "node.crt").write_bytes(authority.node_cert_pem)
        (config / "certs" / "node.key").write_bytes(authority.node_key_pem)
        shutil.copy(keystore, config / "elasticsearch.keystore")
        (node_root / "data").mkdir()
        (node_root / "logs").mkdir()
        _give_to_service_user(node_root)
        nodes.append(
            Node(
                name=f"node-{index}",
                root=node_root,
                http_port=free_port(),
                transport_port=free_port(),
                master=index < masters,
                password=password,
                authority=authority,
                home=home,
                java=java,
            )
        )
    cluster = SecuredCluster(nodes, password, authority, root, f"sluice-test-{root.name[-8:]}")
    # Nodes run detached (`-d`): stop them even if the test run is interrupted.
    atexit.register(cluster.stop)
    try:
        for node in nodes:
            node.start(cluster.seed_hosts(), cluster.name, cluster.masters())
        cluster.wait(nodes)
    except BaseException:
        cluster.stop()
        raise
    return cluster
