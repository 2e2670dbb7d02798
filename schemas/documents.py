"""Documents of a dataset on the wire: RAGFlow's document fields, the upload result,
and the batch status shaped as QAnything's `get_files_statu`."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
)
from quart_schema.pydantic import File

from schemas.common import Pagination, RequestBody
from schemas.ids import PublicId
from schemas.knowledge import ChunkMethod, IdList, ParserConfig, as_list, empty_as_none

FILE_NAME_MAX_BYTES = 255
# The last millisecond a date can name (9999-12-31T23:59:59.999Z): a bound past it cannot
# be turned into a date to compare with, and would fail as a 500.
MAX_MILLISECONDS = 253_402_300_799_999
MAX_STATUS_IDS = 1000


class Run(StrEnum):
    UNSTART = "UNSTART"
    RUNNING = "RUNNING"
    CANCEL = "CANCEL"
    DONE = "DONE"
    FAIL = "FAIL"


# RAGFlow's numeric spelling of the run states ("0".."4"), accepted in filters.
RUN_NUMBERS = {str(number): run for number, run in enumerate(Run)}


def run_names(value: Any) -> Any:
    """`run=DONE`, `run=3`, repeated or `run[]=`: RAGFlow's accepted spellings."""
    values = value if isinstance(value, list) else [value]
    return [RUN_NUMBERS.get(str(item).strip(), str(item).strip().upper()) for item in values]


class DuplicateMode(StrEnum):
    """QAnything's `mode`: `soft` skips a file whose name the dataset already has,
    `strong` uploads it anyway."""

    SOFT = "soft"
    STRONG = "strong"


class UploadQuery(BaseModel):
    mode: DuplicateMode = DuplicateMode.SOFT


class UploadForm(BaseModel):
    """One or more `file` parts; `mode` may also come as a form field."""

    file: list[File]
    mode: DuplicateMode | None = None


class DocumentOrder(StrEnum):
    CREATE_TIME = "create_time"
    UPDATE_TIME = "update_time"
    NAME = "name"


Suffix = Annotated[str, Field(max_length=16)]


class DocumentListQuery(Pagination):
    page_size: int = Field(30, ge=1, le=1024)
    orderby: DocumentOrder = DocumentOrder.CREATE_TIME
    desc: bool = True
    keywords: str | None = Field(None, max_length=255, description="Part of the name")
    name: str | None = Field(None, max_length=255)
    id: PublicId | None = None
    ids: IdList = None
    run: Annotated[list[Run] | None, BeforeValidator(run_names)] = Field(
        None, description="Run states (names or RAGFlow's numbers 0-4); repeat for several"
    )
    suffix: Annotated[list[Suffix] | None, BeforeValidator(as_list)] = None
    create_time_from: int = Field(
        0, ge=0, le=MAX_MILLISECONDS, description="Milliseconds; 0: no bound"
    )
    create_time_to: int = Field(
        0, ge=0, le=MAX_MILLISECONDS, description="Milliseconds; 0: no bound"
    )


MetaValue = str | int | float | list[str | int | float]


class DocumentUpdate(RequestBody):
    """RAGFlow's document update: the fields sent change. A new `chunk_method` or
    `parser_config` takes effect at the next parse."""

    model_config = ConfigDict(extra="forbid")

    name: (
        Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
        | None
    ) = None
    chunk_method: ChunkMethod | None = None
    parser_config: Annotated[ParserConfig | None, BeforeValidator(empty_as_none)] = None
    enabled: Annotated[StrictInt, Field(ge=0, le=1)] | StrictBool | None = Field(
        None, description="1 (or true): searchable; 0 (or false): kept but not searched"
    )
    meta_fields: dict[Annotated[str, Field(max_length=255)], MetaValue] | None = None


class DocumentOut(BaseModel):
    id: str
    name: str
    dataset_id: str
    knowledgebase_id: str = Field(description="The same as dataset_id (RAGFlow's older name)")
    location: str
    size: int
    type: str = Field(description="'pdf' or 'doc'")
    suffix: str
    content_type: str
    source_type: str = "local"
    thumbnail: str = ""
    chunk_method: str
    parser_config: dict[str, Any]
    run: Run
    progress: float
    progress_msg: str
    chunk_count: int
    token_count: int
    process_begin_at: str | None = Field(description="RFC 1123 date, or null before parsing")
    process_duration: float
    status: str = Field(description="'1' enabled, '0' disabled (RAGFlow)")
    enabled: bool
    meta_fields: dict[str, Any]
    created_by: str
    create_time: int
    create_date: str
    update_time: int
    update_date: str


class SkippedFile(BaseModel):
    name: str
    reason: str


class UploadResult(BaseModel):
    """RAGFlow's upload answer (the new documents in `data`) plus the files skipped."""

    code: int = 0
    data: list[DocumentOut]
    skipped: list[SkippedFile] = Field(
        default_factory=list, description="Files not stored, each with the reason"
    )


class DocumentPage(BaseModel):
    docs: list[DocumentOut]
    total: int


class StatusRequest(RequestBody):
    model_config = ConfigDict(extra="forbid")

    ids: list[PublicId] = Field(min_length=1, max_length=MAX_STATUS_IDS)


class StatusColour(StrEnum):
    """QAnything's file status colours."""

    GRAY = "gray"
    GREEN = "green"
    RED = "red"


class FileStatus(BaseModel):
    file_id: str
    file_name: str
    status: StatusColour = Field(description="gray: waiting or parsing; green: done; red: failed")
    bytes: int
    content_length: int
    timestamp: str = Field(description="Upload time as YYYYMMDDHHMM (UTC), as QAnything")
    msg: str
    run: Run
    progress: float
    chunk_count: int
    token_count: int


class StatusBatch(BaseModel):
    total: dict[StatusColour, int]
    details: list[FileStatus]
