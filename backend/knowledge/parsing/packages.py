"""Office Open XML packages (docx, pptx, xlsx) checked before any library opens them.

An Office file is a ZIP of XML parts, which makes two attacks cheap: a ZIP bomb (a few
hundred kilobytes that inflate to gigabytes) and an XML bomb (entities that expand
exponentially). The ZIP's directory is read first, without inflating anything: too many
entries, too many bytes in total once inflated, or a large part compressed more than
real XML ever is, and the file is refused before python-docx, python-pptx or calamine
see it. Python's zipfile never inflates an entry beyond the size its directory declares
(a lying header gives a CRC error, not memory), so checking the declared sizes bounds
the work. Each XML part's prolog (what precedes its root element) is then read for a
DTD: OOXML never uses one, and one is how entity bombs are declared. A prolog padded
past 4 KB (to push a DTD out of sight) is refused as well. The libraries would not
expand entities anyway (python-docx and python-pptx parse with lxml's entity resolution
off; calamine's XML reader knows only the predefined entities): this turns a bomb into
a clear reason instead of a confusing one.

An OLE compound file posing as docx/xlsx/pptx is either a password-protected Office file
(encryption wraps the package in OLE, with an `EncryptionInfo` stream) or a legacy
binary .doc/.xls/.ppt renamed; olefile tells which.
"""

from __future__ import annotations

import codecs
import re
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import olefile

from backend.knowledge.parsing.document import ParseFailure

OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
XML_SUFFIXES = (".xml", ".rels", ".vml")
UNREADABLE = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError)
PROLOG_BYTES = 4096
DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY")
ROOT_START = re.compile(rb"<[A-Za-z_]")
UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass(frozen=True)
class PackageLimits:
    """What a package may hold. Real documents stay far below: a 16 MB upload of XML
    inflates to well under 256 MB, and real XML compresses 5-50x, never near 200x
    (DEFLATE's ceiling is about 1032x, which is what bombs use)."""

    max_entries: int = 10_000
    max_uncompressed_bytes: int = 256 * 1024 * 1024
    max_ratio: float = 200.0
    # Parts smaller than this may compress as much as they like (tiny parts of repeated
    # markup do).
    ratio_floor_bytes: int = 4 * 1024 * 1024


DEFAULT_LIMITS = PackageLimits()


def check_not_ole(path: Path, what: str) -> None:
    """ParseFailure naming what an OLE compound file really is (encrypted, or legacy)."""
    with path.open("rb") as file:
        if file.read(len(OLE_MAGIC)) != OLE_MAGIC:
            return
    try:
        with olefile.OleFileIO(str(path)) as ole:
            encrypted = ole.exists("EncryptionInfo") or ole.exists("EncryptedPackage")
    except (OSError, ValueError) as exc:
        raise ParseFailure(f"{what} is damaged: it could not be opened") from exc
    if encrypted:
        raise ParseFailure(
            f"{what} is password-protected (encrypted): upload a copy without a password"
        )
    raise ParseFailure(
        f"{what} is in a legacy binary Office format (.doc/.xls/.ppt renamed): "
        "save it as .docx, .xlsx or .pptx and upload that"
    )


def unsafe_prolog(package: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """Why the part's XML prolog is refused (a DTD, or a prolog too long to read), or
    None for a part that starts as Office writes them."""
    with package.open(info) as part:
        head = part.read(PROLOG_BYTES)
    if head.startswith(UTF16_BOMS):
        head = head.decode("utf-16", errors="ignore").encode("utf-8")
    root = ROOT_START.search(head)
    prolog = head if root is None else head[: root.start()]
    if any(marker in prolog for marker in DTD_MARKERS):
        return f"declares XML entities (a DTD in {info.filename})"
    if root is None and head.strip() and info.file_size > PROLOG_BYTES:
        return f"hides the start of {info.filename} past its first {PROLOG_BYTES} bytes"
    return None


def check_package(path: Path, what: str, limits: PackageLimits = DEFAULT_LIMITS) -> None:
    """Refuse (ParseFailure) an Office package that is encrypted, legacy, damaged, or a
    ZIP or XML bomb, before any library parses it."""
    check_not_ole(path, what)
    try:
        with zipfile.ZipFile(path) as package:
            infos = package.infolist()
            if len(infos) > limits.max_entries:
                raise ParseFailure(
                    f"{what} holds {len(infos)} files inside (at most {limits.max_entries} "
                    "are allowed): refused as a possible ZIP bomb"
                )
            total = sum(info.file_size for info in infos)
            if total > limits.max_uncompressed_bytes:
                raise ParseFailure(
                    f"{what} would inflate to {total // (1024 * 1024)} MB (at most "
                    f"{limits.max_uncompressed_bytes // (1024 * 1024)} MB are allowed): "
                    "refused as a possible ZIP bomb"
                )
            for info in infos:
                ratio = info.file_size / max(info.compress_size, 1)
                if info.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
                    raise ParseFailure(
                        f"{what} has a part compressed {ratio:.0f}:1, more than real "
                        "documents ever are: refused as a possible ZIP bomb"
                    )
            for info in infos:
                if not info.filename.lower().endswith(XML_SUFFIXES):
                    continue
                problem = unsafe_prolog(package, info)
                if problem:
                    raise ParseFailure(
                        f"{what} {problem}, which Office files never do: refused as a "
                        "possible XML bomb"
                    )
    except UNREADABLE as exc:
        raise ParseFailure(f"{what} is damaged: it is not a readable Office file") from exc
    except NotImplementedError as exc:  # a compression method zipfile does not know
        raise ParseFailure(f"{what} uses a ZIP compression Sluice cannot read") from exc
