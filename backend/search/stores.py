"""The search store this process uses, built from settings once and shared.

SEARCH_STORE chooses it: `embedded` (one SQLite file) or `elasticsearch`
(ELASTICSEARCH_URL's nodes with its credentials and CA, indices under
ELASTICSEARCH_INDEX_PREFIX: `elasticsearch_client.py`); both serve the same
`SearchStore` interface and pass one contract suite.
"""

from __future__ import annotations

from backend.search.embedded import EmbeddedSearchStore
from backend.search.store import SearchStore
from backend.settings import Settings, get_settings

_store: SearchStore | None = None


def build_search_store(settings: Settings) -> SearchStore:
    if settings.search_store == "elasticsearch":
        # The client costs ~1 s to import: only processes configured for it pay that.
        from backend.search.elasticsearch_client import ElasticsearchConnection
        from backend.search.elasticsearch_store import ElasticsearchSearchStore

        return ElasticsearchSearchStore(
            ElasticsearchConnection.from_settings(settings),
            prefix=settings.elasticsearch_index_prefix,
        )
    return EmbeddedSearchStore(
        settings.search_db_file, vector_cache_bytes=settings.search_vector_cache_mb * 1024 * 1024
    )


def configure_search_store(settings: Settings) -> SearchStore:
    """Install the store for `settings` (at startup, or in tests); opened on first use."""
    global _store
    _store = build_search_store(settings)
    return _store


def search_store() -> SearchStore:
    if _store is None:
        return configure_search_store(get_settings())
    return _store


async def close_search_store() -> None:
    global _store
    if _store is not None:
        await _store.close()
        _store = None
