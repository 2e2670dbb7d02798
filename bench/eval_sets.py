"""The labelled retrieval sets in the shared eval folder (`../shared/eval`, see its
README), loaded as documents, queries and graded judgments.

- dbpedia: BEIR layout; a document is an abstract (its title on the first line, as the
  title would head an uploaded file), judgments graded 0..2 (0 = not relevant).
- cmrc2018-trial: SQuAD layout; every paragraph `context` is a document and every
  question a query whose one relevant document is its own paragraph (grade 1).
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

EVAL_DIR = Path(
    os.environ.get("SLUICE_EVAL_DIR", Path(__file__).resolve().parents[2] / "shared" / "eval")
)


@dataclass(frozen=True)
class EvalDocument:
    id: str
    name: str
    text: str


@dataclass(frozen=True)
class EvalSet:
    name: str
    documents: list[EvalDocument]
    queries: dict[str, str]  # query id -> text
    qrels: dict[str, dict[str, int]]  # query id -> {document id: grade > 0}


def dbpedia(folder: Path = EVAL_DIR / "dbpedia") -> EvalSet:
    documents = []
    with open(folder / "corpus.jsonl", encoding="utf-8") as lines:
        for line in lines:
            row = json.loads(line)
            title = row.get("title") or ""
            text = f"{title}\n{row['text']}" if title else row["text"]
            documents.append(EvalDocument(row["_id"], f"{title or row['_id']}.txt", text))
    with open(folder / "queries.jsonl", encoding="utf-8") as lines:
        queries = {row["_id"]: row["text"] for row in map(json.loads, lines)}
    qrels: dict[str, dict[str, int]] = {}
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as table:
        for row in csv.DictReader(table, delimiter="\t"):
            grade = int(row["score"])
            if grade > 0:
                qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = grade
    judged = {qid: text for qid, text in queries.items() if qid in qrels}
    return EvalSet("dbpedia", documents, judged, qrels)


def cmrc_trial(path: Path = EVAL_DIR / "cmrc2018-trial" / "cmrc2018_trial.json") -> EvalSet:
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    documents, queries, qrels = [], {}, {}
    for article in data:
        for index, paragraph in enumerate(article["paragraphs"]):
            doc_id = paragraph.get("id") or f"{article['id']}-{index}"
            title = article.get("title") or doc_id
            documents.append(EvalDocument(doc_id, f"{title}.txt", paragraph["context"]))
            for qa in paragraph["qas"]:
                queries[qa["id"]] = qa["question"]
                qrels[qa["id"]] = {doc_id: 1}
    return EvalSet("cmrc2018-trial", documents, queries, qrels)


SETS = {"dbpedia": dbpedia, "cmrc2018-trial": cmrc_trial}
