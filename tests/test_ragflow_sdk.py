"""RAGFlow's own Python SDK (`ragflow_sdk`) against Sluice over a real socket, unchanged:
datasets and documents as a RAGFlow client manages them."""

from __future__ import annotations

import asyncio

import pytest

from backend.models import Dataset, Document
from tests.support.accounts import create_account
from tests.support.live_server import LiveServer

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
