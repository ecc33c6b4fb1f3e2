"""Seeded mutations of real files for ``benchmarks/fuzz.py``: byte-level, container-aware and structural.

:func:`mutate` takes the bytes of a real file, its kind (``jpeg``, ``png``, ``webp``, ``bmp``, ``tiff``,
``mp4``, ``zip`` (a ``torch.save`` checkpoint), ``json``, ``xml``, ``yaml``, ``labels`` (YOLO txt)) and a
``random.Random``, and returns the mutant and a list of the operations applied, each written so a test can
apply it again by hand (``flip(offset=1234, mask=0x10)``, ``json(path=images[3].width, set=NaN)``...).

* byte level (every kind): bit flips, interesting byte values, truncation, insertion, duplication and
  deletion of byte ranges, bad UTF-8 for text;
* containers: PNG chunk lengths, types, IHDR fields (CRC fixed or not); JPEG segment lengths and SOF
  dimensions; MP4 box sizes and table entry counts; zip members of a checkpoint rewritten with valid
  CRC-32s (so the damage reaches torch's unpickler), ints and strings in its ``data.pkl``;
* structure (JSON, YAML, XML, YOLO labels): drop a key or element, wrong types, NaN and infinities, huge
  ints, deep nesting, YAML alias bombs and tags, keys of other types.
"""

from __future__ import annotations

import io
import json
import pickletools
import random
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

__all__ = ["mutate", "KINDS"]

KINDS = ("jpeg", "png", "webp", "bmp", "tiff", "mp4", "zip", "json", "xml", "yaml", "labels")
TEXT_KINDS = ("json", "xml", "yaml", "labels")
Mutant = tuple[bytes, str]

_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x20, 0x0A, 0x22, 0x3C)
_INTS = (0, 1, 2, 0xFF, 0xFFFF, 0x7FFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x10000, 0x40000000)
_BAD_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80", b"\xc0\xaf", b"\x00",
             b"\xf8\x88\x80\x80\x80")


# --------------------------------------------------------------------------- byte level


def _offset(rng: random.Random, data: bytes) -> int:
    """A position, biased towards the first 4 KB (headers) half of the time."""
    if not data:
        return 0
    if rng.random() < 0.5:
        return rng.randrange(min(len(data), 4096))
    return rng.randrange(len(data))


def flip(data: bytes, rng: random.Random) -> Mutant:
    out = bytearray(data)
    done = []
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        pos, mask = _offset(rng, data), 1 << rng.randrange(8)
        out[pos] ^= mask
        done.append(f"{pos}^0x{mask:02x}")
    return bytes(out), f"flip({', '.join(done)})"


def set_value(data: bytes, rng: random.Random) -> Mutant:
    pos = _offset(rng, data)
    if rng.random() < 0.5:
        value = bytes([rng.choice(_BYTES)])
    else:
        width = rng.choice((2, 4))
        number = rng.choice(_INTS) & ((1 << (8 * width)) - 1)
        value = number.to_bytes(width, rng.choice(("big", "little")))
    return data[:pos] + value + data[pos + len(value):], f"set(offset={pos}, bytes={value.hex()})"


def truncate(data: bytes, rng: random.Random) -> Mutant:
    pos = rng.randrange(len(data)) if rng.random() < 0.7 else max(0, len(data) - rng.randrange(1, 64))
    return data[:pos], f"truncate(at={pos})"


def insert(data: bytes, rng: random.Random) -> Mutant:
    pos = _offset(rng, data)
    size = rng.choice((1, 2, 4, 16, 64, 512))
    chunk = bytes([rng.choice(_BYTES)]) * size if rng.random() < 0.5 else rng.randbytes(size)
    shown = chunk.hex() if size <= 16 else chunk[:16].hex() + "..."
    return data[:pos] + chunk + data[pos:], f"insert(offset={pos}, bytes={shown}, n={size})"


def duplicate(data: bytes, rng: random.Random) -> Mutant:
    start = _offset(rng, data)
    size = min(len(data) - start, rng.choice((1, 4, 16, 256, 4096)))
    where = rng.randrange(len(data) + 1)
    copies = rng.choice((1, 1, 2, 16))
    piece = data[start:start + size] * copies
    return data[:where] + piece + data[where:], f"duplicate(start={start}, size={size}, copies={copies}, at={where})"


def delete(data: bytes, rng: random.Random) -> Mutant:
    start = _offset(rng, data)
    size = min(len(data) - start, rng.choice((1, 4, 16, 256, 4096)))
    return data[:start] + data[start + size:], f"delete(start={start}, size={size})"


def bad_utf8(data: bytes, rng: random.Random) -> Mutant:
    pos = rng.randrange(len(data) + 1)
    junk = rng.choice(_BAD_UTF8)
    return data[:pos] + junk + data[pos:], f"insert(offset={pos}, bytes={junk.hex()})"


BYTE_OPS: tuple[Callable[[bytes, random.Random], Mutant], ...] = (flip, flip, set_value, truncate, insert, duplicate,
                                                                   delete)


# --------------------------------------------------------------------------- PNG, JPEG, MP4


def _png_chunks(data: bytes) -> list[tuple[int, int, bytes]]:
    """``(offset, length, type)`` of each chunk header."""
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        chunks.append((pos, length, kind))
        if kind == b"IEND" or pos + 12 + length > len(data):
            break
        pos += 12 + length
    return chunks


def png_chunk(data: bytes, rng: random.Random) -> Mutant:
    chunks = _png_chunks(data)
    if not chunks:
        return flip(data, rng)
    pos, length, kind = rng.choice(chunks)
    name = kind.decode("latin-1")
    op = rng.choice(("length", "length", "type", "ihdr", "drop", "repeat"))
    if op == "length":
        new = rng.choice((0, 1, length - 1, length + 1, length * 2, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                          rng.randrange(1 << 31))) & 0xFFFFFFFF
        return data[:pos] + new.to_bytes(4, "big") + data[pos + 4:], f"png(chunk={name}@{pos}, length={new})"
    if op == "type":
        new = rng.choice((b"IDAT", b"IEND", b"IHDR", b"PLTE", b"tRNS", b"zTXt", b"iCCP", b"acTL", b"xxxx"))
        return (data[:pos + 4] + new + data[pos + 8:],
                f"png(chunk={name}@{pos}, type={new.decode()})")
    if op == "drop":
        return data[:pos] + data[pos + 12 + length:], f"png(chunk={name}@{pos}, drop)"
    if op == "repeat":
        whole = data[pos:pos + 12 + length]
        n = rng.choice((1, 2, 100))
        return data[:pos] + whole * (n + 1) + data[pos + 12 + length:], f"png(chunk={name}@{pos}, repeat={n})"
    # IHDR: width, height, bit depth, colour type, compression, filter, interlace; CRC refreshed or not
    ihdr = next((c for c in chunks if c[2] == b"IHDR"), None)
    if ihdr is None:
        return flip(data, rng)
    pos = ihdr[0]
    body = bytearray(data[pos + 8:pos + 8 + 13])
    field = rng.choice(("width", "height", "depth", "colour", "compression", "interlace"))
    if field in ("width", "height"):
        value = rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 65536, 100000))
        at = 0 if field == "width" else 4
        body[at:at + 4] = value.to_bytes(4, "big")
    else:
        at = {"depth": 8, "colour": 9, "compression": 10, "interlace": 12}[field]
        value = rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 16, 255))
        body[at] = value
    fix = rng.random() < 0.7
    crc = zlib.crc32(b"IHDR" + bytes(body)).to_bytes(4, "big") if fix else data[pos + 21:pos + 25]
    out = data[:pos + 8] + bytes(body) + crc + data[pos + 25:]
    return out, f"png(IHDR {field}={value}, crc={'fixed' if fix else 'stale'})"


def _jpeg_segments(data: bytes) -> list[tuple[int, int, int]]:
    """``(offset of the marker, marker byte, segment length)`` up to and including SOS."""
    segments, pos = [], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        segments.append((pos, marker, length))
        if marker == 0xDA:
            break
        pos += 2 + length
    return segments


def jpeg_segment(data: bytes, rng: random.Random) -> Mutant:
    segments = _jpeg_segments(data)
    if not segments:
        return flip(data, rng)
    pos, marker, length = rng.choice(segments)
    where = f"FF{marker:02X}@{pos}"
    op = rng.choice(("length", "length", "sof", "drop", "repeat", "marker", "eoi"))
    if op == "sof":
        sof = [s for s in segments if s[1] in (0xC0, 0xC1, 0xC2)]
        if sof:
            pos = sof[0][0]
            field = rng.choice(("precision", "height", "width", "components"))
            at, width = {"precision": (4, 1), "height": (5, 2), "width": (7, 2), "components": (9, 1)}[field]
            value = rng.choice((0, 1, 8, 12, 16, 255, 0xFFFF)) & ((1 << (8 * width)) - 1)
            out = data[:pos + at] + value.to_bytes(width, "big") + data[pos + at + width:]
            return out, f"jpeg(SOF@{pos} {field}={value})"
        op = "length"
    if op == "length":
        new = rng.choice((0, 1, 2, 3, length - 1, length + 1, length * 2, 0xFFFF)) & 0xFFFF
        return data[:pos + 2] + new.to_bytes(2, "big") + data[pos + 4:], f"jpeg(segment={where}, length={new})"
    if op == "drop":
        return data[:pos] + data[pos + 2 + length:], f"jpeg(segment={where}, drop)"
    if op == "repeat":
        whole = data[pos:pos + 2 + length]
        n = rng.choice((1, 2, 50))
        return data[:pos] + whole * (n + 1) + data[pos + 2 + length:], f"jpeg(segment={where}, repeat={n})"
    if op == "marker":
        new = rng.choice((0xD8, 0xD9, 0xDA, 0xC0, 0xC4, 0xDB, 0xDD, 0xFE, 0xE1, 0x00))
        return data[:pos + 1] + bytes([new]) + data[pos + 2:], f"jpeg(segment={where}, marker=FF{new:02X})"
    cut = rng.randrange(segments[-1][0], len(data))  # an end-of-image marker in the middle of the scan
    return data[:cut] + b"\xff\xd9" + data[cut:], f"jpeg(insert FFD9 at={cut})"


_MP4_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"udta", b"edts", b"dinf", b"mvex", b"moof",
                   b"traf"}
_MP4_TABLES = {b"stsz": 16, b"stco": 12, b"co64": 12, b"stts": 12, b"stsc": 12, b"stss": 12, b"ctts": 12,
               b"elst": 12, b"stsd": 12}


def _mp4_boxes(data: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list[tuple[int, int, bytes]]:
    """``(offset, size, type)`` of every box, containers walked."""
    end = len(data) if end is None else end
    boxes, pos = [], start
    while pos + 8 <= end and depth < 8:
        size = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        header = 8
        if size == 1 and pos + 16 <= end:
            size, header = int.from_bytes(data[pos + 8:pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        boxes.append((pos, size, kind))
        if kind in _MP4_CONTAINERS:
            boxes += _mp4_boxes(data, pos + header, pos + size, depth + 1)
        pos += size
    return boxes


def mp4_box(data: bytes, rng: random.Random) -> Mutant:
    boxes = _mp4_boxes(data)
    if not boxes:
        return flip(data, rng)
    tables = [b for b in boxes if b[2] in _MP4_TABLES]
    if tables and rng.random() < 0.35:
        pos, size, kind = rng.choice(tables)
        at = pos + _MP4_TABLES[kind]
        value = rng.choice((0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000000))
        out = data[:at] + value.to_bytes(4, "big") + data[at + 4:]
        return out, f"mp4({kind.decode('latin-1')}@{pos} entry_count={value})"
    pos, size, kind = rng.choice(boxes)
    name = kind.decode("latin-1")
    op = rng.choice(("size", "size", "type", "drop", "repeat"))
    if op == "size":
        new = rng.choice((0, 1, 7, 8, size - 1, size + 1, size * 2, 0x7FFFFFFF, 0xFFFFFFFF)) & 0xFFFFFFFF
        return data[:pos] + new.to_bytes(4, "big") + data[pos + 4:], f"mp4(box={name}@{pos}, size={new})"
    if op == "type":
        new = rng.choice((b"moov", b"mdat", b"free", b"trak", b"stsd", b"avcC", b"xxxx"))
        return data[:pos + 4] + new + data[pos + 8:], f"mp4(box={name}@{pos}, type={new.decode()})"
    if op == "drop":
        return data[:pos] + data[pos + size:], f"mp4(box={name}@{pos}, drop)"
    n = rng.choice((1, 2))
    whole = data[pos:pos + size]
    return data[:pos] + whole * (n + 1) + data[pos + size:], f"mp4(box={name}@{pos}, repeat={n})"


# --------------------------------------------------------------------------- torch.save zip archives


def _rezip(data: bytes, change: Callable[[list[tuple[zipfile.ZipInfo, bytes]]], str]) -> Mutant | None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = [(info, archive.read(info)) for info in archive.infolist()]
    except (zipfile.BadZipFile, OSError, ValueError):
        return None
    what = change(members)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as out:
        for info, body in members:
            out.writestr(info, body)
    return buf.getvalue(), what


def _member_name(info: zipfile.ZipInfo) -> str:
    return info.filename.split("/", 1)[-1]


def _pickle_arg(body: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Replace one int or string argument in a protocol-2 pickle, re-encoding its opcode."""
    ops = list(pickletools.genops(body))
    spans = [(op, arg, pos, ops[i + 1][2] if i + 1 < len(ops) else len(body)) for i, (op, arg, pos) in enumerate(ops)]
    ints = [s for s in spans if s[0].name in ("BININT", "BININT1", "BININT2", "LONG1", "BINPUT", "BINGET")]
    strs = [s for s in spans if s[0].name in ("BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8")]
    if strs and (not ints or rng.random() < 0.3):
        op, arg, start, end = rng.choice(strs)
        new = rng.choice(("", "0", "999", "cpu", "meta", "cuda:7", "HalfStorage", "ByteStorage", "BoolStorage",
                          "model", "format", "x" * 300, "torch._utils", "_rebuild_tensor_v2"))
        encoded = new.encode()
        out = body[:start] + b"X" + len(encoded).to_bytes(4, "little") + encoded + body[end:]
        return out, f"pickle(string@{start} {arg!r:.40} -> {new!r:.40})"
    op, arg, start, end = rng.choice(ints)
    if op.name in ("BINPUT", "BINGET"):
        value = rng.choice((0, 1, 255, (arg or 0) + 1))
        out = body[:start] + op.code.encode("latin-1") + bytes([value & 0xFF]) + body[end:]
        return out, f"pickle({op.name}@{start} {arg} -> {value & 0xFF})"
    value = rng.choice((0, 1, -1, 2, 3, 255, 65535, 2**31 - 1, -(2**31), 2**40, 2**62, 2**63, 10**30))
    if 0 <= value < 256:
        encoded = b"K" + bytes([value])
    elif 0 <= value < 65536:
        encoded = b"M" + value.to_bytes(2, "little")
    elif -(2**31) <= value < 2**31:
        encoded = b"J" + value.to_bytes(4, "little", signed=True)
    else:
        raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
        encoded = b"\x8a" + bytes([len(raw)]) + raw
    return body[:start] + encoded + body[end:], f"pickle(int@{start} {arg} -> {value})"


def zip_member(data: bytes, rng: random.Random) -> Mutant:
    """A member of a ``torch.save`` archive changed and the archive rewritten with correct CRC-32s."""

    def change(members: list[tuple[zipfile.ZipInfo, bytes]]) -> str:
        roll = rng.random()
        pkl = next((i for i, (info, _) in enumerate(members) if info.filename.endswith("data.pkl")), None)
        if pkl is not None and roll < 0.55:
            info, body = members[pkl]
            try:
                new, what = _pickle_arg(body, rng)
            except Exception:  # an already damaged pickle: bytes instead
                new, what = rng.choice(BYTE_OPS)(body, rng)
            members[pkl] = (info, new)
            return f"zip(data.pkl: {what}, crc=fixed)"
        i = rng.randrange(len(members))
        info, body = members[i]
        name = _member_name(info)
        if roll < 0.7:
            del members[i]
            return f"zip(drop {name})"
        if roll < 0.8 and name.startswith("data/"):
            size = rng.choice((0, 1, len(body) // 2, len(body) * 4))
            members[i] = (info, (body * 5)[:size])
            return f"zip({name}: resize {len(body)} -> {size} bytes, crc=fixed)"
        new, what = rng.choice(BYTE_OPS)(body, rng) if body else (b"\x00", "set(empty -> 00)")
        members[i] = (info, new)
        return f"zip({name}: {what}, crc=fixed)"

    out = _rezip(data, change)
    return out if out is not None else flip(data, rng)


def checkpoint_payload(data: bytes, rng: random.Random) -> Mutant:
    """The checkpoint loaded (``weights_only``), one entry edited, saved again: a valid file with wrong content."""
    import torch

    try:
        payload = torch.load(io.BytesIO(data), weights_only=True)
    except Exception:
        return flip(data, rng)
    model = payload.get("model") if isinstance(payload, dict) else None
    if isinstance(model, dict) and model and rng.random() < 0.4:
        key = rng.choice(sorted(model, key=str))  # a mutated state dict may mix key types
        tensor = model[key]
        ops = ("nan", "shape", "dtype", "scalar", "drop", "extra", "int") if isinstance(tensor, torch.Tensor) \
            else ("scalar", "drop", "extra", "int")  # an earlier mutation already made this entry a non-tensor
        op = rng.choice(ops)
        if op == "nan":
            model[key] = torch.full_like(tensor, float("nan")) if tensor.is_floating_point() else tensor
        elif op == "shape":
            model[key] = tensor.reshape(-1)[: max(1, tensor.numel() // 2)].clone()
        elif op == "dtype":
            model[key] = tensor.to(rng.choice((torch.float16, torch.float64, torch.int64, torch.bool, torch.uint8)))
        elif op == "scalar":
            model[key] = torch.tensor(1.0)
        elif op == "drop":
            del model[key]
        elif op == "extra":
            model[f"{key}.extra"] = torch.zeros(3)
        else:
            model[key] = rng.choice((1, "x", None, [1, 2]))
        what = f"model[{key!r}] {op}"
    else:
        payload, what, _ = _edit_tree(payload, rng)
    buf = io.BytesIO()
    try:
        torch.save(payload, buf)
    except Exception:
        return flip(data, rng)
    return buf.getvalue(), f"checkpoint({what}, saved again)"


# --------------------------------------------------------------------------- JSON, YAML, XML, YOLO text

_SENTINEL = "FUZZSENTINEL"


def _weird_value(rng: random.Random) -> tuple[Any, str]:
    """A replacement value and its description; ``raw:`` values are spliced into the text as they are."""
    choices: list[tuple[Any, str]] = [
        (None, "null"), (True, "true"), (False, "false"), ("", '""'), ("x" * 10000, '"x"*10000'),
        (-1, "-1"), (0, "0"), (2**63, "2**63"), (10**30, "10**30"), (float("nan"), "NaN"),
        (float("inf"), "Infinity"), (float("-inf"), "-Infinity"), ([], "[]"), ({}, "{}"), ("1", '"1"'),
        ("\ud800", "lone surrogate"), (1.5, "1.5"), (-1e308, "-1e308"),
        ("raw:1" + "0" * 5000, "a 5001-digit int"), ("raw:" + "[" * 100000 + "]" * 100000, "100000 nested lists"),
        ("raw:1e999", "1e999"),
    ]
    return rng.choice(choices)


def _nodes(obj: Any, rng: random.Random) -> list[tuple[list[Any], Any]]:
    """A random descent from the root: ``[(path, node), ...]``."""
    path: list[Any] = []
    out = [(list(path), obj)]
    node = obj
    while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        node = node[key]
        path.append(key)
        out.append((list(path), node))
    return out


def _path_text(path: list[Any]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path) or "(root)"


def _edit_tree(obj: Any, rng: random.Random) -> tuple[Any, str, str | None]:
    """One structural edit of a parsed document: ``(new root, description, raw text for the sentinel)``."""
    nodes = _nodes(obj, rng)
    path, node = rng.choice(nodes[1:] if len(nodes) > 1 and rng.random() < 0.9 else nodes)  # the root seldom
    parent_path = path[:-1]
    parent = obj
    for p in parent_path:
        parent = parent[p]
    op = rng.choice(("set", "set", "set", "drop", "key-type", "wrap", "duplicate"))
    where = _path_text(path)
    if not path:
        op = "set" if rng.random() < 0.5 else "wrap"
    if op == "drop" and isinstance(parent, (dict, list)):
        del parent[path[-1]]
        return obj, f"drop {where}", None
    if op == "key-type" and isinstance(parent, dict):
        new_key = rng.choice((1, 0, True, None, 1.5, -7))
        parent[new_key] = parent.pop(path[-1])
        return obj, f"rename key {where} -> {new_key!r}", None
    if op == "duplicate" and isinstance(node, list) and node:
        n = rng.choice((1, 10, 1000))
        node.extend([node[0]] * n)
        return obj, f"repeat {where}[0] {n} times", None
    if op == "wrap":
        depth = rng.choice((1, 2, 64, 5000))
        new: Any = node
        if depth > 2:  # spliced in as text: the encoders would recurse this deep
            try:
                new = "raw:" + "[" * depth + json.dumps(node, allow_nan=True) + "]" * depth
            except (TypeError, ValueError):
                new = "raw:" + "[" * depth + "]" * depth
        else:
            for _ in range(depth):
                new = [new]
        desc = f"wrap {where} in {depth} list(s)"
    else:
        new, what = _weird_value(rng)
        desc = f"set {where} = {what}"
    raw = None
    if isinstance(new, str) and new.startswith("raw:"):
        raw, new = new[4:], _SENTINEL
    if not path:
        return new, desc, raw
    parent[path[-1]] = new
    return obj, desc, raw


def json_edit(data: bytes, rng: random.Random) -> Mutant:
    try:
        obj = json.loads(data)
    except Exception:  # an earlier mutation broke it (ValueError, RecursionError...): bytes instead
        return flip(data, rng)
    obj, desc, raw = _edit_tree(obj, rng)
    text = json.dumps(obj, allow_nan=True, ensure_ascii=rng.random() < 0.5)
    if raw is not None:
        text = text.replace(json.dumps(_SENTINEL), raw)
    return text.encode("utf-8", "surrogatepass"), f"json({desc})"


_YAML_RAW = (
    ("python tag", "x: !!python/object/apply:os.system ['echo owned']\n"),
    ("binary tag", "x: !!binary aGVsbG8=\n"),
    ("timestamp", "x: 2001-12-14t21:59:43.10-05:00\n"),
    ("set tag", "x: !!set {a, b}\n"),
    ("complex key", "? [a, b]\n: 1\n"),
    ("deep nesting", "x: " + "[" * 3000 + "]" * 3000 + "\n"),
    ("duplicate anchor use", "x: *undefined\n"),
    ("tab indent", "\tx: 1\n"),
    ("document separator", "---\n...\n---\n"),
)


def alias_bomb(levels: int) -> str:
    """A YAML flow value of ``9 ** (levels + 1)`` integers from ``levels + 1`` anchors, each used 9 times
    ("billion laughs"): a few hundred bytes that expand to hundreds of millions of items when walked."""
    text = "&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"
    for k in range(1, levels + 1):
        text = f"&a{k} [{text}, " + ", ".join([f"*a{k - 1}"] * 8) + "]"
    return text


def _plain_tree(obj: Any, budget: int = 200_000) -> bool:
    """True when ``obj`` has no container reached twice (no YAML alias) and at most ``budget`` nodes: a tree the
    edits may walk and re-encode. An alias bomb from an earlier mutation is a few hundred bytes that would expand to
    hundreds of millions of items in ``json.dumps`` (this is what grew the fuzzer's own parent to 5.5 GB)."""
    seen: set[int] = set()
    stack = [obj]
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            if id(node) in seen or len(seen) >= budget:
                return False
            seen.add(id(node))
            stack.extend(node.values() if isinstance(node, dict) else node)
    return True


def yaml_edit(data: bytes, rng: random.Random) -> Mutant:
    import yaml

    if rng.random() < 0.2:
        name, snippet = rng.choice(_YAML_RAW)
        return data + b"\n" + snippet.encode(), f"yaml(append {name})"
    try:
        obj = yaml.safe_load(data)
    except Exception:  # an earlier mutation broke it (YAMLError, RecursionError...): bytes instead
        return flip(data, rng)
    if not _plain_tree(obj):  # an alias bomb already: editing it would expand it in this process
        return flip(data, rng)
    if rng.random() < 0.15:  # an alias bomb as the value of one node
        levels = rng.choice((7, 8))
        nodes = _nodes(obj, rng)
        path, _ = rng.choice(nodes[1:] if len(nodes) > 1 else nodes)
        parent = obj
        for p in path[:-1]:
            parent = parent[p]
        if path:
            parent[path[-1]] = _SENTINEL
        else:
            obj = _SENTINEL
        obj, desc, raw = obj, f"set {_path_text(path)} = an alias bomb of 9**{levels + 1} items", alias_bomb(levels)
    else:
        obj, desc, raw = _edit_tree(obj, rng)
    try:
        text = yaml.safe_dump(obj, allow_unicode=rng.random() < 0.5, sort_keys=False)
    except (yaml.YAMLError, UnicodeEncodeError, ValueError):
        return flip(data, rng)
    if raw is not None:
        text = text.replace(_SENTINEL, raw)
    return text.encode("utf-8", "surrogatepass"), f"yaml({desc})"


_XML_TEXTS = ("NaN", "inf", "-inf", "-1", "0", "1e400", "1" + "0" * 5000, "", "abc", "1.5", "0x10", " 12 ", "1e-400",
              "9" * 20, "-0")


def xml_edit(data: bytes, rng: random.Random) -> Mutant:
    import xml.etree.ElementTree as ET

    if rng.random() < 0.15:
        snippet = rng.choice((
            ('<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;'
             '&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;'
             '&c;"><!ENTITY e "&d;&d;&d;&d;&d;&d;&d;&d;&d;&d;"><!ENTITY f "&e;&e;&e;&e;&e;&e;&e;&e;&e;&e;">]>\n',
             "entity bomb"),
            ('<?xml version="1.0" encoding="utf-16"?>\n', "declared utf-16"),
            ('<?xml version="1.0" encoding="no-such-codec"?>\n', "unknown encoding"),
            ('<!DOCTYPE a SYSTEM "file:///etc/passwd">\n', "external DTD"),
        ))
        text, name = snippet
        body = data.split(b"?>", 1)[1] if data.startswith(b"<?xml") else data
        if name == "entity bomb":
            body = body.replace(b"<folder>", b"<folder>&f;", 1)
        return text.encode() + body, f"xml(prepend {name})"
    try:
        root = ET.fromstring(data)
    except Exception:  # an earlier mutation broke it: bytes instead
        return flip(data, rng)
    elements = list(root.iter())
    el = rng.choice(elements)
    parents = {child: parent for parent in root.iter() for child in parent}
    op = rng.choice(("text", "text", "text", "drop", "repeat", "nest", "rename"))
    if op == "drop" and el in parents:
        parents[el].remove(el)
        desc = f"drop <{el.tag}>"
    elif op == "repeat" and el in parents:
        n = rng.choice((1, 10, 1000))
        index = list(parents[el]).index(el)
        for _ in range(n):
            parents[el].insert(index, el)
        desc = f"repeat <{el.tag}> {n} times"
    elif op == "nest":
        depth = rng.choice((10, 1000, 100000))
        inner = ET.SubElement(el, "n")
        for _ in range(depth - 1):
            inner = ET.SubElement(inner, "n")
        desc = f"nest {depth} elements in <{el.tag}>"
    elif op == "rename":
        new = rng.choice(("object", "bndbox", "size", "xmin", "name", "x"))
        desc = f"rename <{el.tag}> -> <{new}>"
        el.tag = new
    else:
        leaves = [e for e in elements if len(e) == 0] or elements
        el = rng.choice(leaves)
        value = rng.choice(_XML_TEXTS)
        el.text = value
        desc = f"<{el.tag}> text = {value[:20]!r}{'...' if len(value) > 20 else ''}"
    try:
        text = ET.tostring(root, encoding="unicode")
    except RecursionError:
        return flip(data, rng)
    return text.encode(), f"xml({desc})"


def labels_edit(data: bytes, rng: random.Random) -> Mutant:
    lines = data.decode("utf-8", "replace").splitlines()
    if not lines:
        lines = ["0 0.5 0.5 0.1 0.1"]
    i = rng.randrange(len(lines))
    tokens = lines[i].split()
    op = rng.choice(("token", "token", "token", "drop-token", "add-token", "repeat-line", "blank", "separator"))
    if op == "token" and tokens:
        j = rng.randrange(len(tokens))
        value = rng.choice(("nan", "inf", "-inf", "-1", "1e308", "1e-308", "2", "1" + "0" * 5000, "abc", "0x1",
                            "1,5", "-0", "80", "999999999999999999999", "0.5.5", "１"))
        tokens[j] = value
        desc = f"line {i + 1} token {j + 1} = {value[:20]!r}"
    elif op == "drop-token" and tokens:
        j = rng.randrange(len(tokens))
        del tokens[j]
        desc = f"line {i + 1} drop token {j + 1}"
    elif op == "add-token":
        tokens.append(rng.choice(("0.5", "nan", "x")))
        desc = f"line {i + 1} add token {tokens[-1]!r}"
    elif op == "repeat-line":
        n = rng.choice((10, 1000, 100000))
        lines[i:i + 1] = [lines[i]] * n
        return ("\n".join(lines) + "\n").encode(), f"labels(repeat line {i + 1} {n} times)"
    elif op == "separator":
        lines[i] = lines[i].replace(" ", rng.choice(("\t", ",", "  ", "\u00a0")))
        return ("\n".join(lines) + "\n").encode(), f"labels(line {i + 1} other separator)"
    else:
        tokens = []
        desc = f"line {i + 1} blank"
    lines[i] = " ".join(tokens)
    return ("\n".join(lines) + "\n").encode(), f"labels({desc})"


# --------------------------------------------------------------------------- dispatch

_FORMAT_OPS: dict[str, tuple[Callable[[bytes, random.Random], Mutant], ...]] = {
    "png": (png_chunk,), "jpeg": (jpeg_segment,), "mp4": (mp4_box,), "zip": (zip_member, checkpoint_payload),
    "json": (json_edit, json_edit, bad_utf8), "yaml": (yaml_edit, yaml_edit, bad_utf8),
    "xml": (xml_edit, xml_edit, bad_utf8), "labels": (labels_edit, labels_edit, bad_utf8),
}


def mutate(data: bytes, kind: str, rng: random.Random) -> tuple[bytes, list[str]]:
    """One to three mutations of ``data`` (a real file of ``kind``); returns the mutant and what was done."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    count = rng.choices((1, 2, 3), weights=(70, 20, 10))[0]
    done = []
    for _ in range(count):
        special = _FORMAT_OPS.get(kind, ())
        structural = kind in TEXT_KINDS or kind == "zip"
        use_special = special and rng.random() < (0.7 if structural else 0.5)
        op = rng.choice(special) if use_special else rng.choice(BYTE_OPS)
        if not data:
            data, what = b"\x00", "set(empty -> 00)"
        else:
            data, what = op(data, rng)
        done.append(what)
    return data, done
