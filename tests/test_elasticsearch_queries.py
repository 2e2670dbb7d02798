"""The Elasticsearch store's request bodies, pinned exactly (they are pure functions): the
filter sits inside both legs, hidden generations are excluded by a terms lookup, and the
vector leg sizes num_candidates from top_k and leaves the vectors out of its hits."""

from __future__ import annotations

from backend.search import elasticsearch_queries as q
from backend.search.store import SearchFilter

LIVE = "p-live"
HIDDEN = {"terms": {"generation": {"index": LIVE, "id": "hidden", "path": "generations"}}}


def test_filter_clauses() -> None:
    assert q.filter_clauses(SearchFilter("alice")) == [
        {"term": {"tenant_id": "alice"}},
        {"term": {"available": True}},
    ]
    assert q.filter_clauses(
        SearchFilter("bob", dataset_ids=["d1"], document_ids=["x", "y"], available_only=False)
    ) == [
        {"term": {"tenant_id": "bob"}},
        {"terms": {"dataset_id": ["d1"]}},
        {"terms": {"document_id": ["x", "y"]}},
    ]
    assert q.filter_clauses(SearchFilter("alice", dataset_ids=[])) is None
    assert q.filter_clauses(SearchFilter("alice", document_ids=[])) is None


def test_keyword_body() -> None:
    clauses = [{"term": {"tenant_id": "alice"}}]
    assert q.keyword_body(["river", "谷"], clauses, LIVE, 7) == {
        "query": {
            "bool": {
                "filter": [{"term": {"tenant_id": "alice"}}],
                "must_not": [HIDDEN],
                "must": [{"match": {"search_terms": {"query": "river 谷"}}}],
            }
        },
        "size": 7,
        "sort": [{"_score": "desc"}, {"seq": "asc"}],
        "track_scores": True,
        "track_total_hits": False,
    }


def test_frequency_searches_count_the_whole_store_then_each_term() -> None:
    header = {"index": "p-*"}
    total, river = (
        {
            "size": 0,
            "track_total_hits": True,
            "query": {"bool": {"filter": f, "must_not": [HIDDEN]}},
        }
        for f in ([], [{"term": {"search_terms": "river"}}])
    )
    assert q.frequency_searches(header, ["river"], LIVE) == [header, total, header, river]


def test_knn_body_filters_inside_and_sizes_candidates() -> None:
    clauses = [{"term": {"tenant_id": "alice"}}, {"terms": {"dataset_id": ["d"]}}]
    body = q.knn_body([0.5, 0.5], clauses, LIVE, 1024)
    assert body == {
        "knn": {
            "field": "vector",
            "query_vector": [0.5, 0.5],
            "k": 1024,
            "num_candidates": 2048,
            "filter": {"bool": {"filter": clauses, "must_not": [HIDDEN]}},
        },
        "size": 1024,
        "_source": {"excludes": ["vector"]},
        "track_total_hits": False,
    }
    assert q.knn_body([1.0], clauses, LIVE, 3)["knn"]["num_candidates"] == 100
    capped = q.knn_body([1.0], clauses, LIVE, 50_000)["knn"]
    assert (capped["k"], capped["num_candidates"]) == (10_000, 10_000)


def test_mapping_has_an_unquantized_cosine_vector_and_whitespace_terms() -> None:
    mapping = q.chunk_mapping(384)
    assert mapping["properties"]["vector"] == {
        "type": "dense_vector",
        "dims": 384,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw"},
    }
    assert mapping["properties"]["search_terms"] == {
        "type": "text",
        "analyzer": "whitespace",
        "similarity": "bm25_sluice",
    }
    for field in ("tenant_id", "dataset_id", "document_id", "chunk_id", "important_keywords"):
        assert mapping["properties"][field] == {"type": "keyword"}
    assert mapping["properties"]["available"] == {"type": "boolean"}
    assert "vector" not in q.chunk_mapping(0)["properties"]
    assert q.chunk_index_settings()["similarity"] == {
        "bm25_sluice": {"type": "BM25", "k1": 1.2, "b": 0.75}
    }


def test_document_body_and_dimensions() -> None:
    assert q.document_body("doc", LIVE, terms=["a", "b"], chunk_id="c", offset=5, limit=2) == {
        "query": {
            "bool": {
                "filter": [
                    {"term": {"document_id": "doc"}},
                    {"term": {"chunk_id": "c"}},
                    {"match": {"search_terms": {"query": "a b", "operator": "and"}}},
                ],
                "must_not": [HIDDEN],
            }
        },
        "sort": [{"seq": "asc"}],
        "from": 5,
        "size": 2,
        "track_total_hits": True,
    }
    clauses = [{"term": {"tenant_id": "t"}}]
    assert q.dimensions_body(clauses, LIVE) == {
        "query": {
            "bool": {
                "filter": [*clauses, {"range": {"dimension": {"gt": 0}}}],
                "must_not": [HIDDEN],
            }
        },
        "size": 0,
        "aggs": {"dimensions": {"terms": {"field": "dimension", "size": 16}}},
    }


def test_hidden_after() -> None:
    assert q.hidden_after(["a", "b"], ["c", "a"], ["b"]) == ["a", "c"]
    assert q.hidden_after([], [], []) == []


async def test_search_store_setting_chooses_the_store(tmp_path) -> None:
    from backend.search.elasticsearch_store import ElasticsearchSearchStore
    from backend.search.embedded import EmbeddedSearchStore
    from backend.search.stores import build_search_store
    from backend.settings import Settings

    chosen = build_search_store(
        Settings(search_store="elasticsearch", elasticsearch_url="http://127.0.0.1:1")
    )
    assert isinstance(chosen, ElasticsearchSearchStore)
    await chosen.close()
    embedded = build_search_store(Settings(search_db_path=str(tmp_path / "s.sqlite3")))
    assert isinstance(embedded, EmbeddedSearchStore)
    await embedded.close()
