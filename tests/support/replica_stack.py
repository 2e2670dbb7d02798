"""What two machines would run, as separate processes on this one: two web replicas behind
nginx (TLS terminated there, round robin, the SSE and WebSocket settings of
deploy/nginx/sluice.conf), two chat workers and two ingest workers. Each process has a
DATA_DIR of its own and `REPLICA_MODE=true`; they share nothing but the network services:
PostgreSQL (a database of the layout's own: tests/support/stack_database.py), Redis,
Elasticsearch and S3 (SeaweedFS), as deploy/compose.yaml lays out.

The layout needs all four services; without one, the module skips saying which (in CI,
where `make test` starts them all, it fails instead).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import secrets
import signal
import ssl
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.fake_embeddings import FakeEmbeddingServer
from tests.support.fake_openai import fake_openai_server
from tests.support.ingest_stack import SlowEmbeddings, embedding_settings, start_ingest_worker
from tests.support.live_server import (
    LiveServer,
    ServerProcess,
    delete_prefix,
    free_port,
    spawn,
    start_chat_worker,
    start_hypercorn,
)
from tests.support.nginx import install_nginx, main_config, wait_listening
from tests.support.stack_database import stack_database
from tests.support.task_models import with_models

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_NGINX = ROOT / "deploy" / "nginx" / "sluice.conf"


def missing_services(settings: Settings) -> list[str]:
    """What the layout needs and this run lacks."""
    missing = []
    if not settings.database_url.startswith("postgres"):
        missing.append("PostgreSQL (replicas cannot share SQLite: run with TEST_DATABASE=postgres)")
    if not os.environ.get("ELASTICSEARCH_URL"):
        missing.append("Elasticsearch (ELASTICSEARCH_URL)")
    if not os.environ.get("TEST_S3_ENDPOINT_URL"):
        missing.append("S3 (TEST_S3_ENDPOINT_URL)")
    return missing


def require_services(settings: Settings) -> None:
    """Skips the module (fails it in CI's PostgreSQL pass) when a service is missing."""
    missing = missing_services(settings)
    if not missing:
        return
    reason = "the multi-replica layout needs " + ", ".join(missing)
    if os.environ.get("CI") and settings.database_url.startswith("postgres"):
        pytest.fail(reason)
    pytest.skip(reason)


def make_certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signed for 127.0.0.1 and localhost: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, issuer: x509.Name | None, key, signer, ca: bool) -> x509.Certificate:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("Sluice test CA", None, ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build("127.0.0.1", ca.subject, key, ca_key, ca=False)
    paths = directory / "ca.crt", directory / "tls.crt", directory / "tls.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def render_site(
    web_ports: list[int], https_port: int, http_port: int, cert: Path, key: Path
) -> str:
    """deploy/nginx/sluice.conf with loopback replicas, ports and the test certificate:
    the documented configuration itself is what the test runs."""
    site = DEPLOY_NGINX.read_text()
    site = re.sub(r"\n *server web-\d+:8000[^;]*;", "", site)
    upstreams = "".join(
        f"\n    server 127.0.0.1:{port} max_fails=1 fail_timeout=2s;" for port in web_ports
    )
    site = site.replace("upstream sluice_web {", "upstream sluice_web {" + upstreams)
    site = site.replace("listen 80;", f"listen 127.0.0.1:{http_port};")
    site = re.sub(r"listen 443 ssl( http2)?;", f"listen 127.0.0.1:{https_port} ssl\\1;", site)
    site = site.replace("/etc/nginx/tls/tls.crt", str(cert)).replace(
        "/etc/nginx/tls/tls.key", str(key)
    )
    assert str(cert) in site and str(web_ports[-1]) in site, (
        "deploy/nginx/sluice.conf changed shape"
    )
    return site


@dataclass
class ReplicaStack:
    settings: Settings
    root: Path
    ca_file: Path
    https_port: int
    nginx: ServerProcess
    webs: list[LiveServer] = field(default_factory=list)
    chat_workers: list[ServerProcess] = field(default_factory=list)
    ingest_workers: list[ServerProcess] = field(default_factory=list)
    data_dirs: list[Path] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.https_port}/api/v1/ws"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, account: Account | None = None, **options) -> httpx.AsyncClient:
        """A client of nginx only; a fresh connection per request, so that round robin
        spreads consecutive requests over both replicas."""
        headers = account.headers if account else {}
        limits = httpx.Limits(max_keepalive_connections=0)
        return httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            verify=self.ssl_context(),
            timeout=30,
            limits=limits,
            **options,
        )

    def process_settings(self, name: str) -> Settings:
        """The settings of one process: the shared ones and a DATA_DIR of its own."""
        data_dir = self.root / "data" / name
        data_dir.mkdir(parents=True)
        self.data_dirs.append(data_dir)
        return self.settings.model_copy(update={"data_dir": data_dir})

    def kill(self, process: ServerProcess) -> None:
        process.signal(signal.SIGKILL)
        process.process.wait(10)

    def stop(self) -> None:
        self.nginx.stop()
        for process in [*self.ingest_workers, *self.chat_workers]:
            process.stop()
        for web in self.webs:
            web.server.stop()


def shared_settings(base: Settings, embeddings_url: str, chat_url: str, slow_url: str) -> Settings:
    prefix = f"replicas-{uuid.uuid4().hex[:8]}"
    live = with_models(base, chat_url, slow_url)
    return live.model_copy(
        update={
            "redis_prefix": prefix,
            "replica_mode": True,
            "secret_key": secrets.token_urlsafe(48),
            "search_store": "elasticsearch",
            "elasticsearch_url": os.environ["ELASTICSEARCH_URL"],
            "elasticsearch_index_prefix": prefix,
            "storage_url": f"s3://{os.environ['TEST_S3_BUCKET']}/{prefix}",
            "s3_endpoint_url": os.environ["TEST_S3_ENDPOINT_URL"],
            "s3_region": "us-east-1",
            "aws_access_key_id": os.environ["TEST_S3_ACCESS_KEY"],
            "aws_secret_access_key": os.environ["TEST_S3_SECRET_KEY"],
            "trusted_proxy_hops": 1,
            # The stored answer is compared with the streamed one, word for word.
            "auto_citations": False,
            "admin_username": "",
            "admin_password": "",
            "log_level": os.environ.get("SLUICE_REPLICAS_LOG_LEVEL", "WARNING"),
            "sse_heartbeat_seconds": 1.0,
            "stream_lease_wait_seconds": 2.0,
            "embedding_batch_size": 4,
            "ingest_cancel_poll_seconds": 0.2,
            "feed_progress_interval_seconds": 0.2,
            **embedding_settings(embeddings_url),
        }
    )


@asynccontextmanager
async def replica_stack(
    base: Settings, root: Path, *, webs: int = 2, chat_workers: int = 2, ingest_workers: int = 2
) -> AsyncIterator[tuple[ReplicaStack, SlowEmbeddings]]:
    """The whole layout (two of each process unless told), stopped at the end."""
    nginx_binary = install_nginx()
    embeddings = SlowEmbeddings()
    upstream = FakeEmbeddingServer(embeddings)
    await upstream.start()
    async with (
        stack_database(base, root) as own,
        fake_openai_server(tokens=30, tokens_per_second=500) as fast,
        fake_openai_server(tokens=400, tokens_per_second=40) as slow,
    ):
        settings = shared_settings(own, upstream.openai_base_url, fast.base_url, slow.base_url)
        ca, cert, key = make_certificate(root)
        https_port, http_port = free_port(), free_port()
        stack = ReplicaStack(settings, root, ca, https_port, nginx=None)  # type: ignore[arg-type]
        try:
            for n in range(webs):
                web = await start_hypercorn(stack.process_settings(f"web-{n}"), root)
                stack.webs.append(web)
            for n in range(chat_workers):
                settings_n = stack.process_settings(f"chat-{n}")
                stack.chat_workers.append(await start_chat_worker(settings_n, root))
            for n in range(ingest_workers):
                settings_n = stack.process_settings(f"ingest-{n}")
                stack.ingest_workers.append(await start_ingest_worker(settings_n, root))
            nginx_root = root / "nginx"
            nginx_root.mkdir()
            site = render_site([web.port for web in stack.webs], https_port, http_port, cert, key)
            config = nginx_root / "nginx.conf"
            config.write_text(main_config(nginx_root, site))
            stack.nginx = spawn(
                "nginx", [nginx_binary, "-c", str(config), "-p", str(nginx_root)], settings, root
            )
            await wait_listening(
                https_port, stack.nginx, nginx_root, scheme="https", verify=stack.ssl_context()
            )
            yield stack, embeddings
        finally:
            if stack.nginx is not None:
                stack.stop()
            else:
                for web in stack.webs:
                    web.server.stop()
                for process in [*stack.chat_workers, *stack.ingest_workers]:
                    process.stop()
            await upstream.close()
            await delete_prefix(settings.redis_url, settings.redis_prefix)
