"""Which of a question's terms the keyword leg matches, from how common each one is.

The same rule for both stores (the embedded store counts from its postings,
Elasticsearch from count searches in the same `_msearch` as the legs), so a question
answers alike on either:

- A term in over half the chunks is dropped when rarer ones are left: BM25's IDF gives
  it (almost) nothing ("the", "的"), yet matching it reads most of the index.
- A term in no chunk matches nothing.
- When nothing is left, the common terms are matched only if the question has no other
  words (a query of common words still ranks by frequency). A question whose other words
  are all unknown to the corpus is about something it lacks: matching it on "the" would
  call the best "the"-heavy chunk a perfect keyword match (term similarity is relative
  to the best hit) and defeat `empty_response`.

Counts are over the whole store (every tenant's chunks), as BM25's IDF is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def distinct_terms(terms: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(term for term in terms if term))


def informative_terms(
    terms: Iterable[str], frequencies: Mapping[str, int], chunks: int
) -> list[str]:
    """The terms to match, given each term's chunk count and the store's chunk count."""
    distinct = distinct_terms(terms)
    if len(distinct) <= 1:
        return distinct
    known = [term for term in distinct if frequencies.get(term, 0) > 0]
    rare = [term for term in known if 2 * frequencies[term] <= chunks]
    if rare:
        return rare
    return known if len(known) == len(distinct) else []
