"""The private Elasticsearch node that `make test` starts can do what Sluice's search store
needs: a whitespace-analysed text field over pre-tokenized text, keyword filters, an indexed
cosine `dense_vector`, bulk indexing, BM25 `match` and filtered `knn`, all through the
official async client."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import elasticsearch
import pytest
from elasticsearch import AsyncElasticsearch
from elasticsearch.helpers import async_bulk

pytestmark = pytest.mark.sqlite_only

MAPPING = {
    "properties": {
        "text": {"type": "text", "analyzer": "whitespace", "similarity": "BM25"},
        "dataset_id": {"type": "keyword"},
        "vector": {"type": "dense_vector", "dims": 4, "index": True, "similarity": "cosine"},
    }
}

DOCS = [
    ("a1", "ds-a", "sluice streams tokens over sse", [1.0, 0.0, 0.0, 0.0]),
    ("a2", "ds-a", "redis streams keep events", [0.9, 0.1, 0.0, 0.0]),
    ("a3", "ds-a", "postgres stores rows", [0.0, 1.0, 0.0, 0.0]),
    ("b1", "ds-b", "sluice streams tokens", [1.0, 0.05, 0.0, 0.0]),
    ("b2", "ds-b", "知识 库 检索", [0.0, 0.0, 1.0, 0.0]),
]


@pytest.fixture
async def es(elasticsearch_url: str) -> AsyncIterator[AsyncElasticsearch]:
    client = AsyncElasticsearch(elasticsearch_url, request_timeout=30)
    yield client
    await client.close()


@pytest.fixture
async def index(es: AsyncElasticsearch) -> AsyncIterator[str]:
    name = f"sluice-test-{uuid.uuid4().hex[:10]}"
    await es.indices.create(
        index=name, mappings=MAPPING, settings={"number_of_shards": 1, "number_of_replicas": 0}
    )
    actions = [
        {"_index": name, "_id": doc_id, "dataset_id": ds, "text": text, "vector": vector}
        for doc_id, ds, text, vector in DOCS
    ]
    indexed, errors = await async_bulk(es, actions, refresh="wait_for")
    assert (indexed, errors) == (len(DOCS), [])
    yield name
    await es.indices.delete(index=name)


async def test_server_major_matches_the_client(es: AsyncElasticsearch) -> None:
    # The test distribution has no root endpoint (`GET /`, the client's info()): 405.
    nodes = (await es.nodes.info())["nodes"]
    (version,) = {node["version"] for node in nodes.values()}
    assert version.split(".")[0] == elasticsearch.__versionstr__.split(".")[0]


async def test_mapping_is_the_one_asked_for(es: AsyncElasticsearch, index: str) -> None:
    mapping = (await es.indices.get_mapping(index=index))[index]["mappings"]["properties"]
    assert mapping["vector"]["type"] == "dense_vector"
    assert mapping["vector"]["similarity"] == "cosine"
    assert mapping["vector"]["index"] is True
    assert mapping["text"]["analyzer"] == "whitespace"


async def test_bm25_match_ranks_by_term_overlap(es: AsyncElasticsearch, index: str) -> None:
    result = await es.search(
        index=index,
        query={
            "bool": {
                "must": {"match": {"text": "sluice tokens"}},
                "filter": {"term": {"dataset_id": "ds-a"}},
            }
        },
    )
    ids = [hit["_id"] for hit in result["hits"]["hits"]]
    assert ids == ["a1"]  # b1 matches too but is filtered out; a2/a3 share no term


async def test_whitespace_analyzer_keeps_pretokenized_cjk_words(
    es: AsyncElasticsearch, index: str
) -> None:
    result = await es.search(index=index, query={"match": {"text": "检索"}})
    assert [hit["_id"] for hit in result["hits"]["hits"]] == ["b2"]
    # Not split into characters: one character of a word matches nothing.
    result = await es.search(index=index, query={"match": {"text": "检"}})
    assert result["hits"]["hits"] == []


async def test_knn_with_filter_inside_returns_nearest_of_the_dataset(
    es: AsyncElasticsearch, index: str
) -> None:
    result = await es.search(
        index=index,
        knn={
            "field": "vector",
            "query_vector": [1.0, 0.0, 0.0, 0.0],
            "k": 2,
            "num_candidates": 10,
            "filter": {"term": {"dataset_id": "ds-a"}},
        },
        source=False,
    )
    hits = result["hits"]["hits"]
    assert [hit["_id"] for hit in hits] == ["a1", "a2"]
    # Cosine similarity maps to (1 + cos) / 2: an identical vector scores 1.
    assert hits[0]["_score"] == pytest.approx(1.0, abs=1e-6)
    assert hits[1]["_score"] < hits[0]["_score"]
