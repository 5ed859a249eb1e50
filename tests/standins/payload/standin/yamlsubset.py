"""Orbiter test stand-in, not Kubernetes: a YAML subset (block mappings and sequences, scalars, empty
flow collections), enough for kubeadm configs and kubeconfig files.
"""

from __future__ import annotations

import json
import re


def _scalar(text: str):
    t = text.strip()
    if t == "" or t in ("~", "null", "Null", "NULL"):
        return None
    if t[0] in "\"'":
        q = t[0]
        end = t.rfind(q)
        body = t[1:end]
        if q == "'":
            return body.replace("''", "'")
        return json.loads('"' + body + '"')
    if t in ("true", "True", "TRUE"):
        return True
    if t in ("false", "False", "FALSE"):
        return False
    if t == "{}":
        return {}
    if t == "[]":
        return []
    if t.startswith("[") and t.endswith("]"):
        return [_scalar(x) for x in t[1:-1].split(",") if x.strip()]
    if re.fullmatch(r"-?\d+", t):
        return int(t)
    if re.fullmatch(r"-?\d+\.\d+", t):
        return float(t)
    return t


def _strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "\"'" and (i == 0 or line[i - 1] in " :-[{,"):
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _split_key(text: str) -> tuple[str, str] | None:
    m = re.match(r"""^("(?:[^"\\]|\\.)*"|'[^']*'|[^:#'"][^:]*?)\s*:(?:\s+(.*)|$)""", text)
    if not m:
        return None
    key = m.group(1)
    return (str(_scalar(key)) if key[0] in "\"'" else key), (m.group(2) or "")


def yaml_load_all(text: str) -> list:
    """Documents of a YAML stream, for the block style that config generators write."""
    text = text.strip()
    if text.startswith("{") or text.startswith("["):
        return [json.loads(text)]
    docs, cur = [], []
    for raw in text.splitlines():
        if raw.strip() == "---" or raw.startswith("--- "):
            docs.append(cur)
            cur = []
        elif raw.strip() != "...":
            cur.append(raw)
    docs.append(cur)
    result = []
    for lines in docs:
        items = []
        i = 0
        while i < len(lines):
            raw = lines[i]
            s = _strip_comment(raw.replace("\t", "    "))
            if s.strip():
                block = re.match(r"^(\s*)(?:-\s+)?[^:]*:\s*([|>])[-+]?\s*$", s)
                items.append((len(s) - len(s.lstrip()), s.strip()))
                if block:  # literal/folded block scalar: gather its lines verbatim
                    base = len(s) - len(s.lstrip())
                    body = []
                    j = i + 1
                    while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > base):
                        body.append(lines[j])
                        j += 1
                    ind = min((len(b) - len(b.lstrip()) for b in body if b.strip()), default=0)
                    joined = "\n".join(b[ind:] for b in body).rstrip("\n") + "\n"
                    if block.group(2) == ">":
                        joined = " ".join(x.strip() for x in joined.splitlines()) + "\n"
                    items[-1] = (items[-1][0], items[-1][1][: items[-1][1].rfind(block.group(2))] + json.dumps(joined))
                    i = j
                    continue
            i += 1
        if not items:
            continue
        value, _ = _parse_block(items, 0, items[0][0])
        result.append(value)
    return result


def _parse_block(items: list, pos: int, indent: int):
    if items[pos][1].startswith("- ") or items[pos][1] == "-":
        seq = []
        while pos < len(items) and items[pos][0] == indent and (items[pos][1].startswith("- ") or items[pos][1] == "-"):
            rest = items[pos][1][1:].strip()
            if not rest:
                pos += 1
                if pos < len(items) and items[pos][0] > indent:
                    v, pos = _parse_block(items, pos, items[pos][0])
                else:
                    v = None
                seq.append(v)
                continue
            inner = indent + (len(items[pos][1]) - len(rest))
            if _split_key(rest) and not rest.startswith(('"', "'")) or (rest[0] in "\"'" and _split_key(rest)):
                sub = [(inner, rest)]
                pos += 1
                while pos < len(items) and items[pos][0] >= inner:
                    sub.append(items[pos])
                    pos += 1
                v, _ = _parse_block(sub, 0, inner)
                seq.append(v)
            else:
                seq.append(_scalar(rest))
                pos += 1
        return seq, pos
    mapping: dict = {}
    while pos < len(items) and items[pos][0] == indent:
        kv = _split_key(items[pos][1])
        if kv is None:
            raise ValueError(f"cannot parse YAML line: {items[pos][1]!r}")
        key, rest = kv
        pos += 1
        if rest.strip():
            mapping[key] = _scalar(rest)
        elif pos < len(items) and (
            items[pos][0] > indent or (items[pos][0] == indent and items[pos][1].startswith("-"))
        ):
            mapping[key], pos = _parse_block(items, pos, items[pos][0])
        else:
            mapping[key] = None
    return mapping, pos
