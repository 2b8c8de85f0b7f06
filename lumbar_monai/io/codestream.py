"""Header facts of the compressed images inside DICOM pixel data, read without decoding.

* :func:`codestream_size` - ``(rows, columns, components)`` from a JPEG / JPEG-LS ``SOF`` or a JPEG 2000 ``SIZ``
  marker segment, so that a header whose Rows/Columns disagree with the codestream is refused before a decoder
  allocates for the header's size.
* :func:`trim_j2k` - a JPEG 2000 codestream cut to the tile-parts its ``SOT`` markers declare, followed by
  ``EOC``: what is left between the last tile-part and the end (e.g. a ``COM`` segment of padding written before
  ``EOC``, which OpenJPEG rejects with "Stream too short, expected SOT") is dropped.

Marker layouts: ISO/IEC 10918-1 B.2.2 (SOF), 14495-1 C.2.2 (SOF55), 15444-1 A.4-A.5 (SOC, SOT, SIZ, EOC).
"""

from __future__ import annotations

import struct

__all__ = ["codestream_size", "trim_j2k", "j2k_codestream"]

_SOF = {0xFFC0 + i for i in range(16) if i not in (4, 8, 12)} | {0xFFF7}  # JPEG SOF0-15 (not DHT/JPG/DAC), JPEG-LS
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"


def j2k_codestream(data: bytes) -> bytes | None:
    """The raw J2K codestream: ``data`` itself if it starts with ``SOC SIZ``, the ``jp2c`` box of a JP2 file, else None."""
    if data[:4] == b"\xff\x4f\xff\x51":
        return data
    if not data.startswith(_JP2_SIGNATURE):
        return None
    pos = 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        head = 8
        if length == 1 and pos + 16 <= len(data):
            length, head = struct.unpack(">Q", data[pos + 8 : pos + 16])[0], 16
        elif length == 0:
            length = len(data) - pos
        if kind == b"jp2c":
            inner = data[pos + head : pos + length]
            return inner if inner[:4] == b"\xff\x4f\xff\x51" else None
        if length < head:
            return None
        pos += length
    return None


def codestream_size(data: bytes) -> tuple[int, int, int] | None:
    """``(rows, columns, components)`` declared by a JPEG, JPEG-LS or JPEG 2000 codestream; None if not found."""
    j2k = j2k_codestream(data)
    if j2k is not None:
        if len(j2k) < 42:
            return None
        xsiz, ysiz, xo, yo = struct.unpack(">IIII", j2k[8:24])
        (csiz,) = struct.unpack(">H", j2k[40:42])
        return ysiz - yo, xsiz - xo, csiz
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = (data[pos] << 8) | data[pos + 1]
        if marker == 0xFFFF:  # fill byte
            pos += 1
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF:
            if pos + 10 > len(data):
                return None
            rows, cols = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return rows, cols, data[pos + 9]
        if marker in (0xFFDA, 0xFFD9) or length < 2:  # scan data or end before any SOF
            return None
        pos += 2 + length
    return None


def _trailing_com_dropped(cs: bytes) -> bytes | None:
    """``cs`` without the ``COM`` segment(s) that end exactly at its final ``EOC``, or None if there are none."""
    if not cs.endswith(b"\xff\xd9"):
        return None
    end = len(cs) - 2
    while True:
        start = cs.rfind(b"\xff\x64", 0, end)
        while start >= 0 and start + 2 + struct.unpack(">H", cs[start + 2 : start + 4])[0] != end:
            start = cs.rfind(b"\xff\x64", 0, start)
        if start < 0:
            break
        end = start
    return cs[:end] + b"\xff\xd9" if end < len(cs) - 2 else None


def trim_j2k(data: bytes) -> bytes | None:
    """``data`` cut after its last declared tile-part, with ``EOC`` appended; None if there is nothing to cut or
    the tile-part lengths cannot be followed (a length running past the end). When the last tile-part declares no
    length (``Psot`` 0, it runs to ``EOC``), only ``COM`` segments that end exactly at ``EOC`` are dropped."""
    cs = j2k_codestream(data)
    if cs is None:
        return None
    pos, seen_sot = 2, False
    while pos + 2 <= len(cs):
        (marker,) = struct.unpack(">H", cs[pos : pos + 2])
        if marker == 0xFFD9:  # EOC
            end = pos + 2
            return cs[:end] if (end < len(cs) or cs is not data) else None
        if marker == 0xFF90:  # SOT: Lsot Isot Psot TPsot TNsot; Psot counts from the SOT marker
            if pos + 10 > len(cs):
                return None
            (psot,) = struct.unpack(">I", cs[pos + 6 : pos + 10])
            if psot == 0:  # the last tile-part runs to EOC: only a COM segment ending right at EOC can go
                return _trailing_com_dropped(cs)
            if psot < 14 or pos + psot > len(cs):
                return None
            pos += psot
            seen_sot = True
            continue
        if seen_sot:  # something other than SOT / EOC after the tile-parts: padding to drop
            return cs[:pos] + b"\xff\xd9"
        if marker >> 8 != 0xFF or pos + 4 > len(cs):
            return None
        (length,) = struct.unpack(">H", cs[pos + 2 : pos + 4])
        if length < 2:
            return None
        pos += 2 + length
    return cs[:pos] + b"\xff\xd9" if seen_sot and pos == len(cs) else None
