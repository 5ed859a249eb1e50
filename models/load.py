"""Parse desired.yml into an Orb, with errors that name the file, the line and the field."""

from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .desired import Orb, check_references


class DesiredStateError(Exception):
    """desired.yml is not valid; `str()` is the one line an operator sees."""

    def __init__(self, file: str, line: int | None, field: str, message: str) -> None:
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where} {field}: {message}" if field else f"{where}: {message}")


Path = tuple[str | int, ...]


def _lines(node: yaml.Node, path: Path, out: dict[Path, int], file: str) -> None:
    """Record the 1-based line of every key and item; refuse duplicate keys (PyYAML keeps the last)."""
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = key.value
            if name in seen:
                raise DesiredStateError(file, key.start_mark.line + 1, _dotted(path + (name,)), "duplicate key")
            seen.add(name)
            out[path + (name,)] = key.start_mark.line + 1
            _lines(value, path + (name,), out, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            _lines(item, path + (i,), out, file)


def _dotted(path: Path) -> str:
    parts = list(path[1:] if path[:1] == ("spec",) else path)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _data_path(data: Any, loc: tuple[str | int, ...]) -> Path:
    """Pydantic's loc with union tags (not present in the data) removed."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and not isinstance(part, int) and len(path) == len(loc) - 1:
            path.append(part)  # a missing or extra field: name it
    return tuple(path)


def _line_for(lines: dict[Path, int], path: Path) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return 1


def _known_fields(model: type[BaseModel]) -> str:
    return ", ".join(f.alias or n for n, f in model.model_fields.items())


def _message(err: dict[str, Any]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "union_tag_invalid":
        return f"unknown kind {err['ctx']['tag']!r} (kinds: {err['ctx']['expected_tags'].replace(chr(39), '')})"
    if kind == "union_tag_not_found":
        return "kind is missing"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if kind == "string_type":
        return f"must be a string (got {type(err['input']).__name__}{' ' + repr(err['input']) if not isinstance(err['input'], dict) else ''}); quote it"
    if kind == "int_type":
        return f"must be a whole number (got {err['input']!r})"
    if kind == "bool_type":
        return f"must be true or false (got {err['input']!r})"
    if kind == "string_pattern_mismatch":
        return f"{err['input']!r} does not match {err['ctx']['pattern']}"
    return msg[0].lower() + msg[1:]


def load_desired(text: str, file: str = "desired.yml") -> Orb:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise DesiredStateError(file, mark.line + 1 if mark else None, "", f"not valid YAML: {problem}") from None
    if root is None:
        raise DesiredStateError(file, 1, "", "the file is empty: start from `orbiter init`")
    lines: dict[Path, int] = {}
    _lines(root, (), lines, file)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise DesiredStateError(file, 1, "", "must be a mapping with apiVersion, kind, metadata and spec")
    try:
        orb = Orb.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        path = _data_path(data, first["loc"])
        if first["type"] in ("union_tag_invalid",):
            path = path + ("kind",)
        message = _message(first)
        extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise DesiredStateError(file, _line_for(lines, path), _dotted(path), message + extra) from None
    problems = check_references(orb)
    if problems:
        first = problems[0]
        extra = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise DesiredStateError(file, _line_for(lines, first.path), _dotted(first.path), first.message + extra)
    return orb
