"""The knowledge bases an assistant answers from: which may be attached, and how they read.

An assistant's datasets must all be its owner's (another user's dataset is reported as
missing, never forbidden) and share one embedding model, since one question is embedded
once and searched against all of them. A dataset deleted after it was attached is
skipped when answering and left out of `datasets` in responses.
"""

from __future__ import annotations

from collections.abc import Iterable

from backend.errors import BadRequest, NotFound
from backend.models import Assistant, Dataset
from schemas.chats import AssistantDataset, PromptVariable

KNOWLEDGE_VARIABLE = "knowledge"


async def check_datasets(owner_id: int, dataset_ids: list[str]) -> list[str]:
    """The ids without repeats, once each is the owner's and they share a model."""
    ids = list(dict.fromkeys(dataset_ids))
    if not ids:
        return ids
    found = {d.id: d for d in await Dataset.filter(owner_id=owner_id, id__in=ids)}
    missing = [dataset_id for dataset_id in ids if dataset_id not in found]
    if missing:
        raise NotFound(
            f"Dataset '{missing[0]}' not found: attach only datasets you own "
            "(GET /api/v1/datasets lists them)"
        )
    models = {found[dataset_id].embedding_model for dataset_id in ids}
    if len(models) > 1:
        uses = ", ".join(f"'{i}' uses {found[i].embedding_model}" for i in ids)
        raise BadRequest(
            f"Datasets use different embedding models ({uses}): attach datasets that share "
            "one embedding model"
        )
    return ids


def check_variables(prompt: str, variables: Iterable[PromptVariable | dict]) -> None:
    """RAGFlow's rule: a required variable must appear in the prompt as `{key}`."""
    for variable in variables:
        item = variable if isinstance(variable, PromptVariable) else PromptVariable(**variable)
        if not item.optional and "{" + item.key + "}" not in prompt:
            raise BadRequest(
                f"Parameter '{item.key}' is not used: put {{{item.key}}} in prompt.prompt "
                "or mark the variable optional"
            )


async def datasets_of(assistants: Iterable[Assistant]) -> dict[str, AssistantDataset]:
    """The attached datasets that still exist, by id, for many assistants in one query."""
    wanted = {(a.owner_id, dataset_id) for a in assistants for dataset_id in a.dataset_ids}
    if not wanted:
        return {}
    rows = await Dataset.filter(id__in=[dataset_id for _, dataset_id in wanted])
    return {
        row.id: AssistantDataset(id=row.id, name=row.name, embedding_model=row.embedding_model)
        for row in rows
        if (row.owner_id, row.id) in wanted
    }
