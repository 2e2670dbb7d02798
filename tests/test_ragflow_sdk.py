"""RAGFlow's own Python SDK (`ragflow_sdk`) against Sluice over a real socket, unchanged:
datasets and documents as a RAGFlow client manages them."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from backend.models import Dataset, Document
from backend.providers.embedding_local import LocalEmbeddingProvider
from backend.providers.embeddings import LOCAL_EMBEDDING_MODEL_ID
from tests.support.accounts import create_account
from tests.support.live_server import LiveServer
from tests.support.retrieval_corpus import indexed_dataset

ragflow_sdk = pytest.importorskip("ragflow_sdk")


def ragflow_session(base_url: str, token: str) -> dict:
    """What a RAGFlow client does with a knowledge base, through the SDK (blocking)."""
    rag = ragflow_sdk.RAGFlow(api_key=token, base_url=base_url)
    dataset = rag.create_dataset(name="sdk-kb", description="made by ragflow_sdk")
    dataset.update({"parser_config": {"chunk_token_num": 256}})
    documents = dataset.upload_documents(
        [
            {"display_name": "notes.txt", "blob": b"hello from the sdk"},
            {"display_name": "readme.md", "blob": b"# Title\n"},
        ]
    )
    uploaded = [(d.name, d.run, d.size) for d in documents]
    first = documents[0]
    first.update({"name": "renamed.txt"})
    dataset.delete_documents(ids=[documents[1].id])
    return {
        "dataset": dataset,
        "found": rag.get_dataset(name="sdk-kb"),
        "uploaded": uploaded,
        "listed": [d.name for d in dataset.list_documents(page=1, page_size=10)],
        "by_keyword": [d.name for d in dataset.list_documents(keywords="renamed")],
        "bytes": first.download(),
    }


async def test_the_ragflow_sdk_manages_datasets_and_documents(
    live_processes: LiveServer,
) -> None:
    account = await create_account(live_processes.settings, password=False)
    seen = await asyncio.to_thread(ragflow_session, live_processes.base_url, account.access_token)
    dataset = seen["dataset"]
    assert (dataset.chunk_method, dataset.permission) == ("naive", "me")
    assert seen["found"].id == dataset.id
    assert seen["uploaded"] == [("notes.txt", "UNSTART", 18), ("readme.md", "UNSTART", 8)]
    assert seen["listed"] == ["renamed.txt"]
    assert seen["by_keyword"] == ["renamed.txt"]
    assert seen["bytes"] == b"hello from the sdk"
    stored = await Dataset.get(id=dataset.id)
    assert stored.description == "made by ragflow_sdk"
    assert stored.parser_config["chunk_token_num"] == 256
    assert await Document.filter(dataset_id=dataset.id).count() == 1

    rag = ragflow_sdk.RAGFlow(api_key=account.access_token, base_url=live_processes.base_url)
    await asyncio.to_thread(rag.delete_datasets, ids=[dataset.id])
    assert not await Dataset.filter(id=dataset.id).exists()


def ragflow_retrieve(base_url: str, token: str, dataset_id: str, document_id: str) -> dict:
    """RAGFlow's `rag.retrieve(...)` as its users call it (blocking)."""
    rag = ragflow_sdk.RAGFlow(api_key=token, base_url=base_url)
    found = rag.retrieve(dataset_ids=[dataset_id], question="How deep is Lake Baikal?")
    narrowed = rag.retrieve(
        dataset_ids=[dataset_id],
        document_ids=[document_id],
        question="lake",
        page_size=1,
        similarity_threshold=0.0,
        keyword=True,
    )
    try:
        rag.retrieve(dataset_ids=["0" * 32], question="lake")
    except Exception as error:  # the SDK raises a bare Exception with the message
        refused = str(error)
    return {"found": found, "narrowed": narrowed, "refused": refused}


async def test_the_ragflow_sdk_retrieves_chunks(live_processes: LiveServer) -> None:
    """The default local embedding model embeds the chunks here and the question in the
    web process, as a deployment with nothing configured would."""
    account = await create_account(live_processes.settings, password=False)
    local = LocalEmbeddingProvider(LOCAL_EMBEDDING_MODEL_ID)
    texts = {
        "baikal.txt": [
            "Lake Baikal in Siberia is the deepest lake on Earth, 1,642 metres deep.",
            "Baikal holds about a fifth of the world's unfrozen fresh water.",
        ],
        "bread.txt": ["Sourdough bread rises slowly because wild yeast ferments the dough."],
    }
    async with httpx.AsyncClient(
        base_url=live_processes.base_url, headers=account.headers, timeout=30
    ) as http:
        corpus = await indexed_dataset(
            http,
            live_processes.settings.search_db_file,
            account.id,
            texts,
            embed=local.embed_documents,
        )
    baikal = corpus.documents["baikal.txt"]
    seen = await asyncio.to_thread(
        ragflow_retrieve, live_processes.base_url, account.access_token, corpus.dataset_id, baikal
    )
    found = seen["found"]
    assert found[0].content == texts["baikal.txt"][0]
    assert (found[0].document_id, found[0].dataset_id) == (baikal, corpus.dataset_id)
    assert found[0].document_name == "baikal.txt"
    # Calibrated to the model (0 = what it gives unrelated texts), not the raw cosine.
    assert found[0].vector_similarity > 0.5 and 0 < found[0].term_similarity <= 1
    assert all(chunk.similarity >= 0.2 for chunk in found)
    # e5's cosines between unrelated texts are high (about 0.8), so the bread chunk may
    # pass the threshold, but it ranks below both lake chunks.
    assert [chunk.content for chunk in found][:2] == texts["baikal.txt"]
    narrowed = seen["narrowed"]
    assert len(narrowed) == 1 and narrowed[0].document_id == baikal
    assert "not found" in seen["refused"]
