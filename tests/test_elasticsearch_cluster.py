"""Elasticsearch as production runs it: a two-node cluster with security and TLS on, which
this module starts itself (tests/support/elasticsearch_nodes.py: certificates made here,
the `elastic` password set with the node's own keystore tool).

- The store reaches it with ELASTICSEARCH_URL naming both nodes, a password and the CA;
  the indices it creates get ELASTICSEARCH_SHARDS/REPLICAS.
- A wrong password, a wrong API key, an unknown CA, or no CA at all fail readiness with a
  sentence that says which (a 503 naming the search store), never a hang or a 500. (A
  valid API key cannot be made here: the test distribution's `.security` index needs an
  analyzer from the analysis-common module it lacks, so keys are checked being refused.)
- `kill -9` of one node: retrieval still answers from the replicas, ingestion goes on,
  and once the node is back nothing is missing, on either copy.

Both nodes boot at once (about one node's boot time) and serve the whole module; the
node-loss test comes last because it kills one. The module runs in CI (`CI` set: a
missing distribution fails it) or with SLUICE_ES_CLUSTER=1; elsewhere it is skipped,
saying so, since booting two JVMs on a busy 2-core machine took up to four minutes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from quart.testing import QuartClient

from backend.search import stores
from backend.search.elasticsearch_client import ElasticsearchConnection
from backend.search.elasticsearch_store import ElasticsearchSearchStore
from backend.search.store import SearchFilter, SearchStoreUnavailable
from backend.settings import Settings
from tests.support.elasticsearch_nodes import Authority, SecuredCluster, boot, distribution
from tests.support.search_stores import chunk

# Booting two JVMs took up to 240 s on a busy 2-core machine; the first test waits for it.
pytestmark = [pytest.mark.sqlite_only, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
async def cluster() -> AsyncIterator[SecuredCluster]:
    if not (os.environ.get("CI") or os.environ.get("SLUICE_ES_CLUSTER")):
        pytest.skip(
            "the secured two-node cluster runs in CI or with SLUICE_ES_CLUSTER=1 "
            "(two JVMs took 40-240 s to boot on a busy 2-core machine)"
        )
    found = distribution()
    if isinstance(found, str):
        if os.environ.get("CI"):
            pytest.fail(f"a secured Elasticsearch cluster is required in CI: {found}")
        pytest.skip(found)
    started = time.monotonic()
    running = await asyncio.to_thread(boot, 2)
    print(f"two secured nodes up in {time.monotonic() - started:.1f} s")
    yield running
    await asyncio.to_thread(running.stop)


@pytest.fixture(scope="module")
def ca_file(cluster: SecuredCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cluster.authority.write_ca(tmp_path_factory.mktemp("es-ca") / "ca.crt")


def connection(
    cluster: SecuredCluster, ca_file: Path, **options: object
) -> ElasticsearchConnection:
    defaults: dict[str, object] = {
        "username": "elastic",
        "password": cluster.password,
        "ca_certs": str(ca_file),
        "replicas": 1,
        "request_timeout": 30.0,
    }
    return ElasticsearchConnection.of_url(cluster.urls, **{**defaults, **options})


async def open_store(conn: ElasticsearchConnection) -> ElasticsearchSearchStore:
    store = ElasticsearchSearchStore(conn, prefix=f"sluice-test-{uuid.uuid4().hex[:10]}")
    await store.open()
    return store


async def drop(store: ElasticsearchSearchStore) -> None:
    names = list(await store.client.indices.get(index=f"{store.prefix}-*"))
    if names:
        await store.client.indices.delete(index=",".join(names))
    await store.close()


def records(document: str, count: int, dataset: str = "ds-cluster") -> list:
    rng = np.random.default_rng(abs(hash(document)) % 2**32)
    return [
        chunk(
            f"{document}-c{index}",
            f"{document} lake number {index} baikal",
            document=document,
            dataset=dataset,
            vector=rng.normal(size=4),
        )
        for index in range(count)
    ]


SCOPE = SearchFilter(tenant_id="alice", dataset_ids=["ds-cluster"])


async def found_documents(store: ElasticsearchSearchStore) -> set[str]:
    keyword, by_vector = await store.search_legs(["baikal"], np.ones(4, np.float32), SCOPE, 200)
    assert {h.record.chunk_id for h in keyword} >= {h.record.chunk_id for h in by_vector}
    return {hit.record.document_id for hit in keyword}


async def test_password_and_ca_serve_every_node_with_replicas(
    cluster: SecuredCluster, ca_file: Path
) -> None:
    store = await open_store(connection(cluster, ca_file, shards=2))
    try:
        await store.check(1.5)
        await store.replace_document("doc-a", records("doc-a", 3))
        assert await found_documents(store) == {"doc-a"}
        index = store.index_for(4)
        applied = (await store.client.indices.get_settings(index=index))[index]["settings"]
        assert (applied["index"]["number_of_shards"], applied["index"]["number_of_replicas"]) == (
            "2",
            "1",
        )
        live = (await store.client.indices.get_settings(index=store.live_index))[store.live_index]
        assert live["settings"]["index"]["number_of_replicas"] == "1"
        # Both nodes answer for the store: each URL alone reaches the same data.
        for url in cluster.urls.split(","):
            one_node = dataclasses.replace(connection(cluster, ca_file), hosts=(url,))
            alone = ElasticsearchSearchStore(one_node, prefix=store.prefix)
            try:
                assert await alone.count_chunks("doc-a") == 3
            finally:
                await alone.close()
    finally:
        await drop(store)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (
            {"password": "not-the-password"},
            "authentication failed (check ELASTICSEARCH_API_KEY or USERNAME/PASSWORD)",
        ),
        (
            {"username": "", "password": "", "api_key": "bm90OmFrZXk="},
            "authentication failed (check ELASTICSEARCH_API_KEY or USERNAME/PASSWORD)",
        ),
        (
            {"ca_certs": "unknown-ca"},
            "TLS failed: the node's certificate is not signed by ELASTICSEARCH_CA_CERTS",
        ),
        (
            {"ca_certs": ""},
            "TLS failed: the node's certificate is not signed by ELASTICSEARCH_CA_CERTS",
        ),
    ],
    ids=["wrong-password", "wrong-api-key", "unknown-ca", "system-cas"],
)
async def test_what_is_wrong_is_named_by_readiness(
    cluster: SecuredCluster,
    ca_file: Path,
    client: QuartClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    options: dict[str, str],
    reason: str,
) -> None:
    if options.get("ca_certs") == "unknown-ca":
        options = {"ca_certs": str(Authority.make("stranger").write_ca(tmp_path / "other.crt"))}
    store = ElasticsearchSearchStore(connection(cluster, ca_file, **options))
    try:
        started = time.monotonic()
        with pytest.raises(SearchStoreUnavailable) as caught:
            await store.check(1.5)
        assert str(caught.value) == reason
        assert time.monotonic() - started < 2.0
        monkeypatch.setattr(stores, "_store", store)
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert (await response.get_json())["message"] == f"Not ready: search store ({reason})"
    finally:
        await store.close()


async def test_verification_off_only_when_asked(cluster: SecuredCluster, ca_file: Path) -> None:
    store = ElasticsearchSearchStore(connection(cluster, ca_file, ca_certs="", verify_certs=False))
    try:
        await store.check(1.5)
    finally:
        await store.close()


def test_settings_build_the_connection(cluster: SecuredCluster, ca_file: Path) -> None:
    settings = Settings(
        _env_file=None,
        search_store="elasticsearch",
        elasticsearch_url=f" {cluster.urls.replace(',', ' , ')} ",
        elasticsearch_username="elastic",
        elasticsearch_password=cluster.password,
        elasticsearch_ca_certs=str(ca_file),
        elasticsearch_shards=3,
        elasticsearch_replicas=1,
    )
    built = ElasticsearchConnection.from_settings(settings)
    assert built.hosts == tuple(cluster.urls.split(","))
    assert built.index_settings() == {"number_of_shards": 3, "number_of_replicas": 1}
    store = stores.build_search_store(settings)
    assert isinstance(store, ElasticsearchSearchStore)
    assert store.connection == built


async def test_losing_a_node_loses_nothing(cluster: SecuredCluster, ca_file: Path) -> None:
    """Last in the module: it kills the data-only node (the master stays, so the cluster
    keeps a master and promotes the replicas of the primaries it lost)."""
    store = await open_store(connection(cluster, ca_file))
    lost = cluster.nodes[1]
    try:
        before = [f"before-{i}" for i in range(4)]
        for document in before:
            await store.replace_document(document, records(document, 3))
        await store.client.cluster.health(
            index=f"{store.prefix}-*", wait_for_status="green", timeout="60s"
        )
        assert await found_documents(store) == set(before)

        lost.kill()
        started = time.monotonic()
        assert await found_documents(store) == set(before)
        print(f"retrieval with a node gone answered in {time.monotonic() - started:.2f} s")
        await store.check(1.5)  # still ready: the other node serves

        during = [f"during-{i}" for i in range(3)]
        started = time.monotonic()
        for document in during:
            await store.replace_document(document, records(document, 3))
        print(f"3 documents ingested with a node gone in {time.monotonic() - started:.2f} s")
        assert await found_documents(store) == set(before + during)

        started = time.monotonic()
        await asyncio.to_thread(cluster.restart, lost)
        await store.client.cluster.health(
            index=f"{store.prefix}-*", wait_for_status="green", timeout="120s"
        )
        print(f"node back and the cluster green in {time.monotonic() - started:.1f} s")
        everything = set(before + during)
        assert await found_documents(store) == everything
        # Each copy alone holds every chunk: the returning node caught up.
        for node in cluster.nodes:
            counted = await store.client.count(
                index=store.index_for(4), preference=f"_only_nodes:{node.name}"
            )
            assert counted["count"] == 3 * len(everything), node.name
        await store.replace_document("after", records("after", 2))
        assert await found_documents(store) == everything | {"after"}
    finally:
        await drop(store)
