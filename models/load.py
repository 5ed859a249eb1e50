"""Parse desired.yml into an Orb, with errors that name the file, the line and the field."""

from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from .desired import NAME_PATTERN, Orb, check_references


class DesiredStateError(Exception):
    """desired.yml is not valid; `str()` is the one line an operator sees."""

    def __init__(self, file: str, line: int | None, field: str, message: str) -> None:
        self.file, self.line, self.field, self.message = file, line, field, message
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where} {field}: {message}" if field else f"{where}: {message}")


Path = tuple[str | int, ...]


def _lines(node: yaml.Node, path: Path, out: dict[Path, int], file: str) -> None:
    """The 1-based line of every key and item; duplicate keys and foreign tags refused (PyYAML
    keeps the last of two keys, and a tag the safe loader cannot build is a traceback there)."""
    if node.tag not in yaml.SafeLoader.yaml_constructors:
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        raise DesiredStateError(file, node.start_mark.line + 1, _dotted(path),
                                f"YAML tag {tag} is not allowed: write a plain value")
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key, value in node.value:
            _lines(key, path, {}, file)
            name = key.value
            if name in seen:
                raise DesiredStateError(file, key.start_mark.line + 1, _dotted(path + (name,)),
                                        f"duplicate key (first on line {seen[name]})")
            seen[name] = key.start_mark.line + 1
            out[path + (name,)] = key.start_mark.line + 1
            _lines(value, path + (name,), out, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out[path + (i,)] = item.start_mark.line + 1
            _lines(item, path + (i,), out, file)


def _dotted(path: Path) -> str:
    parts = list(path[1:] if path[:1] == ("spec",) and len(path) > 1 else path)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _data_path(data: Any, loc: tuple[str | int, ...]) -> Path:
    """Pydantic's loc with union tags (not present in the data) removed."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and node.get("kind") == part:
            continue  # the tag of a discriminated union: not a key of the data
        elif isinstance(node, dict) and not isinstance(part, int) and i == len(loc) - 1:
            path.append(part)  # a missing or extra field: name it
    return tuple(path)


def _line_for(lines: dict[Path, int], path: Path) -> int | None:
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return 1


def _unwrap(tp: Any) -> list[Any]:
    """The classes a field annotation may hold: Annotated, unions and Optional opened up."""
    if get_origin(tp) is Annotated:
        return _unwrap(get_args(tp)[0])
    if get_origin(tp) in (Union, UnionType):
        return [c for arg in get_args(tp) for c in _unwrap(arg)]
    return [tp]


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class that holds the last element of loc (for listing its fields)."""
    candidates: list[Any] = [Orb]
    for part in loc[:-1]:
        nxt: list[Any] = []
        for tp in candidates:
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                for name, field in tp.model_fields.items():
                    if part in (name, field.alias):
                        nxt += _unwrap(field.annotation)
                kind = tp.model_fields.get("kind")
                if kind is not None and part in get_args(kind.annotation):
                    nxt.append(tp)  # a union tag names the member itself
            elif get_origin(tp) in (dict, list):
                nxt += _unwrap(get_args(tp)[-1])
        candidates = nxt
        # Keep only the union member a tag selects.
        tagged = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)
                  and "kind" in c.model_fields
                  and part in get_args(c.model_fields["kind"].annotation)]
        candidates = tagged or candidates
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    return models[0] if len(models) == 1 else None


def _known_fields(model: type[BaseModel]) -> str:
    names = [f.alias or n for n, f in model.model_fields.items()]
    order = {"apiVersion": 0, "kind": 1}  # as they are written, not as classes inherit them
    return ", ".join(sorted(names, key=lambda n: order.get(n, 2)))


def _got(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return type(value).__name__
    return f"{type(value).__name__} {value!r}"


def _message(err: dict[str, Any]) -> str:
    kind, msg = err["type"], err["msg"]
    if kind == "union_tag_invalid":
        kinds = err["ctx"]["expected_tags"].replace("'", "")
        return f"unknown kind {err['ctx']['tag']!r} (kinds: {kinds})"
    if kind == "union_tag_not_found":
        return "kind is missing"
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        model = _model_at(err["loc"])
        return f"unknown field (known: {_known_fields(model)})" if model else "unknown field"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if kind == "string_type":
        return f"must be a string (got {_got(err['input'])}); quote it"
    if kind == "int_type":
        return f"must be a whole number (got {_got(err['input'])})"
    if kind == "bool_type":
        return f"must be true or false without quotes (got {_got(err['input'])})"
    if kind in ("dict_type", "model_type"):
        return f"must be a mapping of fields (got {_got(err['input'])})"
    if kind == "list_type":
        return f"must be a list (got {_got(err['input'])})"
    if kind == "literal_error":
        return f"must be {err['ctx']['expected']} (got {err['input']!r})"
    if kind == "string_pattern_mismatch":
        if err["ctx"]["pattern"] == NAME_PATTERN:
            return (f"{err['input']!r} is not a name: lowercase letters, digits and '-',"
                    " at most 32 characters")
        return f"{err['input']!r} does not match {err['ctx']['pattern']}"
    return msg[0].lower() + msg[1:]


def _yaml_error(err: yaml.YAMLError, file: str) -> DesiredStateError:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and start and mark and start.line != mark.line:
        problem += f" ({context} on line {start.line + 1})"
    line = mark.line + 1 if mark else None
    return DesiredStateError(file, line, "", f"not valid YAML: {problem}")


def load_desired(text: str, file: str = "desired.yml") -> Orb:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise _yaml_error(err, file) from None
    if root is None:
        raise DesiredStateError(file, 1, "", "the file is empty: start from `orbiter init`")
    lines: dict[Path, int] = {}
    _lines(root, (), lines, file)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise _yaml_error(err, file) from None
    if not isinstance(data, dict):
        raise DesiredStateError(file, 1, "",
                                "must be a mapping with apiVersion, kind, metadata and spec")
    try:
        orb = Orb.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        path = _data_path(data, first["loc"])
        if first["type"] in ("union_tag_invalid",):
            path = path + ("kind",)
        message = _message(first)
        field, _, rest = message.partition(": ")
        if first["type"] == "value_error" and field.isidentifier() and rest:
            path, message = path + (field,), rest  # a model check that names its field
        extra = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        line = _line_for(lines, path)
        raise DesiredStateError(file, line, _dotted(path), message + extra) from None
    problems = check_references(orb)
    if problems:
        first = problems[0]
        extra = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        line = _line_for(lines, first.path)
        raise DesiredStateError(file, line, _dotted(first.path), first.message + extra)
    return orb


def field_line(text: str, path: Path) -> int | None:
    """The 1-based line of a key in a YAML text (`("spec", "clusters", "meta", "version")`), for
    edits that keep the rest of the file as the operator wrote it; None when it is not there."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    lines: dict[Path, int] = {}
    if root is not None:
        try:
            _lines(root, (), lines, "desired.yml")
        except DesiredStateError:
            return None
    return lines.get(path)
