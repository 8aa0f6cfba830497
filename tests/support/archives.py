"""Archives and workbooks built in memory for the extraction tests (tests/test_extract.py,
tests/test_hostile_files.py): a zip of given members, a minimal .xlsx as Excel writes it, a
zip's members read back, and a gzip bomb yielded block by block."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

MiB = 1024 * 1024


def zip_bytes(members: dict[str, bytes | str]) -> bytes:
    """A deflated zip holding `members` (name -> content), in that order."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


GIB_ZEROS_CRC32 = 0x5B64C2B0          # crc32 of 2**30 zero bytes


def gzip_bomb_chunks(total_mib: int = 1024):
    """A valid gzip of `total_mib` MiB of zeros (~1 MB), built and yielded without ever holding it.

    Each MiB is deflated after a full flush, so its compressed form is the same block every time.
    """
    zeros = bytes(MiB)
    engine = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = engine.compress(zeros) + engine.flush(zlib.Z_FULL_FLUSH)
    block = engine.compress(zeros) + engine.flush(zlib.Z_FULL_FLUSH)
    last = engine.compress(zeros) + engine.flush()
    yield b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + first
    for _ in range(total_mib - 2):
        yield block
    yield last + struct.pack("<II", GIB_ZEROS_CRC32, (total_mib * MiB) & 0xFFFFFFFF)


SPREADSHEET_NS = 'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


def xlsx_bytes(rows: list[list[object]], extra_sheet: list[list[object]] | None = None) -> bytes:
    """A minimal workbook as Excel writes it: strings shared, numbers inline, empty cells absent
    (None), and one inline string."""
    strings: list[str] = []

    def sheet(table: list[list[object]]) -> str:
        xml_rows = []
        for r, row in enumerate(table, 1):
            cells = []
            for c, value in enumerate(row):
                ref = f"{chr(65 + c)}{r}"
                if value is None:
                    continue
                if isinstance(value, str) and value.startswith("inline:"):
                    cells.append(f'<c r="{ref}" t="inlineStr"><is><t>{value[7:]}</t></is></c>')
                elif isinstance(value, str):
                    strings.append(value)
                    cells.append(f'<c r="{ref}" t="s"><v>{len(strings) - 1}</v></c>')
                else:
                    cells.append(f'<c r="{ref}"><v>{value}</v></c>')
            xml_rows.append(f'<row r="{r}">{"".join(cells)}</row>')
        return f'<?xml version="1.0" encoding="UTF-8"?><worksheet {SPREADSHEET_NS}><sheetData>{"".join(xml_rows)}</sheetData></worksheet>'

    sheets = [sheet(rows)] + ([sheet(extra_sheet)] if extra_sheet else [])
    shared = "".join(f"<si><t>{s}</t></si>" if i % 2 else f"<si><r><t>{s[:3]}</t></r><r><t>{s[3:]}</t></r></si>"
                     for i, s in enumerate(strings))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", f"<workbook {SPREADSHEET_NS}><sheets/></workbook>")
        for number, xml in enumerate(sheets, 1):
            archive.writestr(f"xl/worksheets/sheet{number}.xml", xml)
        archive.writestr("xl/sharedStrings.xml", f'<sst {SPREADSHEET_NS} count="{len(strings)}">{shared}</sst>')
    return buffer.getvalue()


def zip_members(archive_bytes: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}
