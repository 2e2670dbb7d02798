"""Retrieval: a question over a user's datasets, as RAGFlow's `POST /api/v1/retrieval`.

`retrieve(user_id, request)` is the one entry point (the route and RAG chat call it):

1. **Scope.** Datasets and documents are looked up in SQL by owner, so another user's
   ids are 404 exactly like unknown ones. The store query then carries the caller as
   tenant and the dataset (and document) ids as a filter inside both legs, so even a
   wrong id list could not reach another tenant's chunks. Disabled documents are left
   out (their chunks stay indexed, so enabling them again needs no re-parse).
2. **One embedding model.** Vectors of different models do not compare, so datasets
   searched together must share one (a 400 names them otherwise). The question is
   embedded with it here, in the web process: one short text, tens of milliseconds on
   the local model (a remote model costs one request).
3. **Both legs, fused.** `search_legs` fetches BM25 and vector candidates in one round
   trip; `fusion.fuse` turns them into one list with 0..1 similarities. Each leg gives
   its best `leg_depth` chunks: a window of FUSION_WINDOW (64, RAGFlow's RERANK_LIMIT),
   widened to reach the requested page and the reranker's RERANK_TOP_N, and never more
   than `top_k`. Like RAGFlow, which fuses and reranks 64 chunks whatever `top_k` says,
   Sluice does not build and score 2 x 1024 candidates to show a page of 30: the best
   64 of each leg are the same whichever the pool, and `total` counts the chunks kept
   from the window.
   `similarity_threshold` applies to the fused similarity; `keyword: true` keeps only
   chunks sharing a word with the question.
4. **Rerank** (when `rerank_id` names a model): the top RERANK_TOP_N survivors are
   re-ordered by the reranker (backend/search/rerankers.py), so at most that many are
   returned over all pages; a failing reranker leaves them in fused order.
5. **Page.** `total` and `doc_aggs` count every chunk kept; `page`/`page_size` slice it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from backend.errors import BadGateway, BadRequest, NotFound
from backend.models import Dataset, Document
from backend.providers.base import ProviderError
from backend.providers.embedding_baseline import similarity_baseline
from backend.providers.embedding_registry import embedding_provider
from backend.providers.rerank import Reranker
from backend.providers.rerank_registry import reranker as rerank_model
from backend.search.analyzer import query_terms
from backend.search.fusion import FusedHit, effective_vector_weight, fuse
from backend.search.highlight import highlight
from backend.search.rerankers import rerank_hits
from backend.search.store import SearchFilter
from backend.search.stores import search_store
from backend.settings import get_settings
from schemas.retrieval import DocAgg, RetrievalRequest, RetrievalResult, RetrievedChunk


async def owned_datasets(user_id: int, dataset_ids: Sequence[str]) -> list[Dataset]:
    found = {d.id: d for d in await Dataset.filter(id__in=list(dataset_ids), owner_id=user_id)}
    if missing := [i for i in dataset_ids if i not in found]:
        raise NotFound(f"Dataset '{missing[0]}' not found: no dataset of yours has this id")
    return [found[i] for i in dataset_ids]


async def owned_documents(
    user_id: int, document_ids: Sequence[str], dataset_ids: Sequence[str]
) -> list[Document]:
    query = Document.filter(id__in=list(document_ids), owner_id=user_id)
    if dataset_ids:
        query = query.filter(dataset_id__in=list(dataset_ids))
    found = {d.id for d in await query}
    if missing := [i for i in document_ids if i not in found]:
        where = "the datasets named" if dataset_ids else "your datasets"
        raise NotFound(f"Document '{missing[0]}' not found in {where}")
    return await query


def shared_embedding_model(datasets: Sequence[Dataset]) -> str:
    models = {dataset.embedding_model for dataset in datasets}
    if len(models) > 1:
        which = "; ".join(f"'{d.name}' ({d.id}) uses {d.embedding_model}" for d in datasets)
        raise BadRequest(
            "Datasets searched together must use the same embedding model, since vectors "
            f"of different models do not compare: {which}. Search them separately."
        )
    return datasets[0].embedding_model


async def searched_scope(
    user_id: int, request: RetrievalRequest
) -> tuple[list[Dataset], list[str] | None]:
    """The caller's datasets searched, and the document ids the search is limited to
    (None: every enabled document of those datasets)."""
    datasets = await owned_datasets(user_id, request.dataset_ids)
    if request.document_ids:
        documents = await owned_documents(user_id, request.document_ids, request.dataset_ids)
        if not datasets:
            datasets = await owned_datasets(user_id, list({d.dataset_id: 0 for d in documents}))
        return datasets, [d.id for d in documents if d.enabled]
    ids = [d.id for d in datasets]
    disabled = Document.filter(dataset_id__in=ids, owner_id=user_id, enabled=False)
    if not await disabled.exists():
        return datasets, None
    enabled = Document.filter(dataset_id__in=ids, owner_id=user_id, enabled=True)
    return datasets, list(await enabled.values_list("id", flat=True))


async def question_vector(model_id: str, question: str):  # -> np.ndarray
    try:
        return await embedding_provider(model_id).embed_query(question)
    except ProviderError as exc:
        raise BadGateway(f"The question could not be embedded: {exc.message}") from exc


# Chunks each leg contributes to fusion, unless a page or the reranker needs more.
FUSION_WINDOW = 64


def leg_depth(request: RetrievalRequest, reranker: Reranker | None) -> int:
    wanted = max(FUSION_WINDOW, request.page * request.page_size)
    if reranker is not None:
        wanted = max(wanted, get_settings().rerank_top_n)
    return min(request.top_k, wanted)


def chosen_reranker(request: RetrievalRequest) -> Reranker | None:
    return rerank_model(request.rerank_id) if request.rerank_id else None


async def retrieve(user_id: int, request: RetrievalRequest) -> RetrievalResult:
    reranker = chosen_reranker(request)  # an unknown id is a 400 before any work
    datasets, document_ids = await searched_scope(user_id, request)
    model_id = shared_embedding_model(datasets)
    question = request.question.strip()
    terms = query_terms(question)
    if not terms or document_ids == []:
        return RetrievalResult(chunks=[], doc_aggs=[], total=0)
    vector = await question_vector(model_id, question)
    scope = SearchFilter(
        tenant_id=str(user_id), dataset_ids=[d.id for d in datasets], document_ids=document_ids
    )
    keyword_hits, vector_hits = await search_store().search_legs(
        terms, vector, scope, leg_depth(request, reranker)
    )
    weight = effective_vector_weight(request.vector_similarity_weight)
    baseline = await similarity_baseline(model_id)
    hits = fuse(
        keyword_hits, vector_hits, vector, terms, vector_weight=weight, vector_baseline=baseline
    )
    hits = [hit for hit in hits if hit.similarity >= request.similarity_threshold]
    if request.keyword:
        hits = [hit for hit in hits if hit.term_similarity > 0]
    if reranker is not None:
        settings = get_settings()
        hits = await rerank_hits(
            reranker, question, hits[: settings.rerank_top_n], settings.rerank_timeout_seconds
        )
    start = (request.page - 1) * request.page_size
    page = hits[start : start + request.page_size]
    names = await document_names(hits)
    return RetrievalResult(
        chunks=[retrieved(hit, names, terms if request.highlight else None) for hit in page],
        doc_aggs=doc_aggs(hits, names),
        total=len(hits),
    )


async def document_names(hits: Sequence[FusedHit]) -> dict[str, str]:
    """Current document names: a chunk records the name it was indexed under, and a
    document renamed since then should be shown by its new name."""
    ids = list({hit.record.document_id for hit in hits})
    if not ids:
        return {}
    return dict(await Document.filter(id__in=ids).values_list("id", "name"))


def retrieved(
    hit: FusedHit, names: dict[str, str], highlight_terms: Sequence[str] | None
) -> RetrievedChunk:
    record = hit.record
    return RetrievedChunk(
        id=record.chunk_id,
        content=record.content,
        document_id=record.document_id,
        document_keyword=names.get(record.document_id, record.document_name),
        document_name=names.get(record.document_id, record.document_name),
        dataset_id=record.dataset_id,
        important_keywords=list(record.important_keywords),
        questions=list(record.questions),
        positions=[list(box) for box in record.positions],
        similarity=hit.similarity,
        vector_similarity=hit.vector_similarity,
        term_similarity=hit.term_similarity,
        highlight=None if highlight_terms is None else highlight(record.content, highlight_terms),
    )


def doc_aggs(hits: Sequence[FusedHit], names: dict[str, str]) -> list[DocAgg]:
    """Documents by how many chunks were found in each (most first, then first found)."""
    counts = Counter(hit.record.document_id for hit in hits)
    indexed = {hit.record.document_id: hit.record.document_name for hit in hits}
    return [
        DocAgg(doc_name=names.get(doc_id, indexed[doc_id]), doc_id=doc_id, count=count)
        for doc_id, count in counts.most_common()
    ]
