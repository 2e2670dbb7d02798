"""Datasets at /api/v1/datasets: RAGFlow's fields, defaults and rules, owner isolation."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from quart.testing import QuartClient

from backend.models import Dataset, Document
from backend.models.knowledge import DocumentRun
from backend.providers.embedding_registry import configure_embeddings
from backend.settings import Settings
from tests.support.accounts import Account
from tests.support.knowledge import create_dataset, upload_ok

URL = "/api/v1/datasets"


async def error(response, status: int) -> str:
    assert response.status_code == status, await response.get_data(as_text=True)
    body = await response.get_json()
    assert body["code"] == status
    return body["message"]


def unique_name() -> str:
    return f"kb-{uuid.uuid4().hex[:8]}"


async def add_document(dataset_id: str, owner_id: int, **fields) -> Document:
    """A document row as parsing leaves it (no file): counts for the totals."""
    values = {"name": f"{uuid.uuid4().hex[:6]}.txt", "location": "x", "type": "doc"}
    values |= {"suffix": "txt", "content_type": "text/plain", **fields}
    return await Document.create(dataset_id=dataset_id, owner_id=owner_id, **values)


async def test_create_takes_ragflow_defaults(
    client: QuartClient, owner: Account, settings: Settings
) -> None:
    data = await create_dataset(client, owner, name="  Manuals  ")
    assert data["name"] == "Manuals"
    assert data["chunk_method"] == "naive"
    assert data["permission"] == "me"
    assert data["embedding_model"] == settings.default_embedding_model
    assert data["parser_config"] == {
        "chunk_token_num": 512,
        "delimiter": "\n",
        "html4excel": False,
        "layout_recognize": "DeepDOC",
        "auto_keywords": 0,
        "auto_questions": 0,
        "raptor": {"use_raptor": False},
        "graphrag": {"use_graphrag": False},
    }
    assert (data["similarity_threshold"], data["vector_similarity_weight"]) == (0.2, 0.3)
    assert (data["document_count"], data["chunk_count"], data["token_num"]) == (0, 0, 0)
    assert data["avatar"] is None and data["description"] is None
    assert data["tenant_id"] == data["created_by"] == str(owner.id)
    assert data["create_time"] == data["update_time"] > 0
    assert data["create_date"].endswith(" GMT")


async def test_create_stores_the_parser_config_sent(client: QuartClient, owner: Account) -> None:
    config = {
        "chunk_token_num": 128,
        "delimiter": "\n!?。",
        "html4excel": True,
        "layout_recognize": "Plain Text",
        "raptor": {"use_raptor": True, "max_token": 600},
        "entity_types": ["person"],
    }
    data = await create_dataset(client, owner, parser_config=config)
    assert data["parser_config"] == {
        "auto_keywords": 0,
        "auto_questions": 0,
        "graphrag": {"use_graphrag": False},
        **config,
    }
    qa = await create_dataset(client, owner, chunk_method="qa")
    assert qa["parser_config"] == {
        "raptor": {"use_raptor": False},
        "graphrag": {"use_graphrag": False},
    }
    one = await create_dataset(client, owner, chunk_method="one", parser_config={})
    assert one["parser_config"] == {}


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 129},
        {"name": "emoji 😀"},
        {"name": "ok", "avatar": "iVBORw0KGgo="},
        {"name": "ok", "avatar": "data:image/gif;base64,R0lGOD"},
        {"name": "ok", "chunk_method": "book"},
        {"name": "ok", "chunk_method": None},
        {"name": "ok", "permission": "everyone"},
        {"name": "ok", "parser_config": {"chunk_token_num": 0}},
        {"name": "ok", "parser_config": {"chunk_token_num": 2049}},
        {"name": "ok", "parser_config": {"delimiter": ""}},
        {"name": "ok", "parser_config": {"auto_keywords": 33}},
        {"name": "ok", "parser_config": {"huge": "x" * 70_000}},
        {"name": "ok", "similarity_threshold": 1.5},
        {"name": "ok", "pipeline_id": "0" * 32},
    ],
)
async def test_create_refuses_what_ragflow_refuses(
    client: QuartClient, owner: Account, body: dict
) -> None:
    response = await client.post(URL, json=body, headers=owner.headers)
    await error(response, 422)


async def test_an_avatar_is_a_png_or_jpeg_data_url(client: QuartClient, owner: Account) -> None:
    avatar = "data:image/png;base64,iVBORw0KGgo="
    assert (await create_dataset(client, owner, avatar=avatar))["avatar"] == avatar


async def test_an_embedding_model_not_served_is_400(client: QuartClient, owner: Account) -> None:
    body = {"name": unique_name(), "embedding_model": "BAAI/bge-large-zh-v1.5@BAAI"}
    message = await error(await client.post(URL, json=body, headers=owner.headers), 400)
    assert "BAAI/bge-large-zh-v1.5@BAAI" in message


async def test_names_are_unique_per_owner_whatever_their_case(
    client: QuartClient, owner: Account, stranger: Account
) -> None:
    name = unique_name()
    await create_dataset(client, owner, name=name)
    again = await client.post(URL, json={"name": name.upper()}, headers=owner.headers)
    assert name.upper() in await error(again, 409)
    # Another user may use the same name.
    assert (await create_dataset(client, stranger, name=name))["name"] == name


async def test_list_pages_orders_and_filters_the_callers_datasets(
    client: QuartClient, owner: Account, stranger: Account
) -> None:
    created = [await create_dataset(client, owner) for _ in range(3)]
    await create_dataset(client, stranger)
    response = await client.get(URL, headers=owner.headers)
    body = await response.get_json()
    assert body["total_datasets"] == 3
    assert [d["id"] for d in body["data"]] == [d["id"] for d in reversed(created)]

    page = await (
        await client.get(f"{URL}?page=2&page_size=2&desc=false", headers=owner.headers)
    ).get_json()
    assert [d["id"] for d in page["data"]] == [created[2]["id"]]
    assert page["total_datasets"] == 3

    by_name = await (
        await client.get(f"{URL}?name={created[1]['name']}", headers=owner.headers)
    ).get_json()
    assert [d["id"] for d in by_name["data"]] == [created[1]["id"]]
    by_id = await (
        await client.get(f"{URL}?id={created[0]['id']}", headers=owner.headers)
    ).get_json()
    assert [d["id"] for d in by_id["data"]] == [created[0]["id"]]
    several = f"{URL}?ids={created[0]['id']}&ids={created[2]['id']}"
    by_ids = await (await client.get(several, headers=owner.headers)).get_json()
    assert {d["id"] for d in by_ids["data"]} == {created[0]["id"], created[2]["id"]}
    assert by_ids["total_datasets"] == 2
    await error(await client.get(f"{URL}?name=missing", headers=owner.headers), 404)
    await error(await client.get(f"{URL}?orderby=name", headers=owner.headers), 422)


async def test_list_adds_up_the_documents(client: QuartClient, owner: Account) -> None:
    dataset = await create_dataset(client, owner)
    await add_document(
        dataset["id"], owner.id, run=DocumentRun.DONE, chunk_count=3, token_count=300
    )
    await add_document(
        dataset["id"], owner.id, run=DocumentRun.RUNNING, chunk_count=2, token_count=50
    )
    await add_document(dataset["id"], owner.id)
    body = await (
        await client.get(
            f"{URL}?id={dataset['id']}&include_parsing_status=true", headers=owner.headers
        )
    ).get_json()
    listed = body["data"][0]
    assert (listed["document_count"], listed["chunk_count"], listed["token_num"]) == (3, 5, 350)
    assert (listed["unstart_count"], listed["running_count"], listed["done_count"]) == (1, 1, 1)
    assert (listed["cancel_count"], listed["fail_count"]) == (0, 0)


async def test_update_changes_what_is_sent(client: QuartClient, owner: Account) -> None:
    dataset = await create_dataset(client, owner, parser_config={"chunk_token_num": 256})
    url = f"{URL}/{dataset['id']}"
    response = await client.put(
        url,
        json={"description": "docs", "pagerank": 5, "parser_config": {"delimiter": "##"}},
        headers=owner.headers,
    )
    updated = (await response.get_json())["data"]
    assert updated["description"] == "docs" and updated["pagerank"] == 5
    assert updated["parser_config"]["chunk_token_num"] == 256
    assert updated["parser_config"]["delimiter"] == "##"
    assert updated["name"] == dataset["name"]
    # A new chunk method without parser_config takes that method's defaults.
    qa = (
        await (await client.put(url, json={"chunk_method": "qa"}, headers=owner.headers)).get_json()
    )["data"]
    assert qa["chunk_method"] == "qa"
    assert qa["parser_config"] == {
        "raptor": {"use_raptor": False},
        "graphrag": {"use_graphrag": False},
    }


async def test_update_keeps_names_unique(client: QuartClient, owner: Account) -> None:
    first, second = await create_dataset(client, owner), await create_dataset(client, owner)
    response = await client.put(
        f"{URL}/{second['id']}", json={"name": first["name"].title()}, headers=owner.headers
    )
    await error(response, 409)
    same = await client.put(
        f"{URL}/{first['id']}", json={"name": first["name"]}, headers=owner.headers
    )
    assert same.status_code == 200


@pytest.fixture
def second_embedding_model(settings: Settings) -> Iterator[str]:
    """An OpenAI-compatible embedding model served beside the local one."""
    model = "text-embedding-3-small@OpenAI"
    entry = {
        "id": model,
        "provider": "openai",
        "upstream": "text-embedding-3-small",
        "dimension": 1536,
    }
    configure_embeddings(settings.model_copy(update={"embedding_models": json.dumps([entry])}))
    yield model
    configure_embeddings(settings)


async def test_the_embedding_model_is_fixed_once_there_are_chunks(
    client: QuartClient, owner: Account, settings: Settings, second_embedding_model: str
) -> None:
    dataset = await create_dataset(client, owner)
    assert dataset["embedding_model"] == settings.default_embedding_model
    url = f"{URL}/{dataset['id']}"
    body = {"embedding_model": second_embedding_model}
    changed = await client.put(url, json=body, headers=owner.headers)
    assert (await changed.get_json())["data"]["embedding_model"] == second_embedding_model
    assert (await Dataset.get(id=dataset["id"])).embedding_dimension == 1536

    await add_document(dataset["id"], owner.id, run=DocumentRun.DONE, chunk_count=4)
    back = {"embedding_model": settings.default_embedding_model}
    message = await error(await client.put(url, json=back, headers=owner.headers), 400)
    assert "4" in message and second_embedding_model in message
    assert (await Dataset.get(id=dataset["id"])).embedding_model == second_embedding_model
    same = await client.put(url, json=body, headers=owner.headers)
    assert same.status_code == 200


async def test_delete_by_ids_is_all_or_nothing(
    client: QuartClient, owner: Account, stranger: Account, settings: Settings
) -> None:
    keep, gone = await create_dataset(client, owner), await create_dataset(client, owner)
    theirs = await create_dataset(client, stranger)
    await upload_ok(client, owner, gone["id"], [("a.txt", b"hello")])
    missing = uuid.uuid4().hex
    for ids in ([gone["id"], missing], [gone["id"], theirs["id"]]):
        response = await client.delete(URL, json={"ids": ids}, headers=owner.headers)
        await error(response, 404)
    assert await Dataset.filter(id=gone["id"]).exists()

    response = await client.delete(URL, json={"ids": [gone["id"]]}, headers=owner.headers)
    assert (await response.get_json()) == {"code": 0, "data": None}
    assert not await Dataset.filter(id=gone["id"]).exists()
    assert not await Document.filter(dataset_id=gone["id"]).exists()
    assert not (settings.documents_dir / gone["id"]).exists()
    assert await Dataset.filter(id__in=[keep["id"], theirs["id"]]).count() == 2


@pytest.mark.parametrize(
    ("body", "deletes_all"),
    [
        ({"delete_all": True}, True),
        ({"ids": None, "delete_all": True}, True),
        ({"ids": [], "delete_all": True}, True),
        ({"ids": []}, False),
        ({"ids": [], "delete_all": False}, False),
    ],
)
async def test_delete_everything_only_when_asked_for(
    client: QuartClient, owner: Account, stranger: Account, body: dict, deletes_all: bool
) -> None:
    await create_dataset(client, owner)
    theirs = await create_dataset(client, stranger)
    response = await client.delete(URL, json=body, headers=owner.headers)
    assert response.status_code == 200
    assert await Dataset.filter(owner_id=owner.id).exists() is not deletes_all
    assert await Dataset.filter(id=theirs["id"]).exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": None},
        {"delete_all": False},
        {"ids": None, "delete_all": False},
        {"delete_all": 1},
        {"delete_all": "true"},
        {"delete_all": None},
    ],
)
async def test_a_delete_that_names_nothing_is_422_and_deletes_nothing(
    client: QuartClient, owner: Account, body: dict
) -> None:
    """An empty or loose body never means "everything": only `delete_all: true` does."""
    dataset = await create_dataset(client, owner)
    message = await error(await client.delete(URL, json=body, headers=owner.headers), 422)
    assert "delete_all" in message
    assert await Dataset.filter(id=dataset["id"]).exists()


async def test_ids_win_over_delete_all_as_in_ragflow(client: QuartClient, owner: Account) -> None:
    gone, kept = await create_dataset(client, owner), await create_dataset(client, owner)
    body = {"ids": [gone["id"]], "delete_all": True}
    assert (await client.delete(URL, json=body, headers=owner.headers)).status_code == 200
    assert not await Dataset.filter(id=gone["id"]).exists()
    assert await Dataset.filter(id=kept["id"]).exists()


async def test_delete_refuses_duplicate_and_malformed_ids(
    client: QuartClient, owner: Account
) -> None:
    dataset = await create_dataset(client, owner)
    for ids in ([dataset["id"], dataset["id"]], ["not-an-id"]):
        await error(await client.delete(URL, json={"ids": ids}, headers=owner.headers), 422)


async def test_another_users_dataset_is_404(
    client: QuartClient, owner: Account, stranger: Account
) -> None:
    dataset = await create_dataset(client, owner)
    url = f"{URL}/{dataset['id']}"
    await error(await client.put(url, json={"name": "mine"}, headers=stranger.headers), 404)
    listed = await client.get(f"{URL}?id={dataset['id']}", headers=stranger.headers)
    await error(listed, 404)
    await error(await client.put(f"{URL}/nope", json={}, headers=owner.headers), 404)
    assert (await client.get(URL)).status_code == 401
