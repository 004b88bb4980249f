"""Read a YAML file into ``Settings``, turning every failure into one ``ConfigError`` line."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from daemon.errors import ConfigError
from daemon.redact import redact_text
from daemon.settings.base import FIELD_ERROR, suggest
from daemon.settings.root import Settings


class ConfigFileError(ConfigError):
    """The file cannot be read or is not YAML; ``path`` is ``FILE`` or ``FILE:LINE``."""


# Limits on what a configuration file may be. Real ones are a few KiB, nest under ten levels
# and expand to a few thousand values; the limits only refuse hostile or broken input (a
# 100,000-deep nesting that would exhaust the stack, a billion-laughs alias bomb that would
# expand to 10**9 values in validation) quickly and with a clear message.
MAX_FILE_BYTES = 16 * 2**20
MAX_DEPTH = 64
MAX_EXPANDED_NODES = 1_000_000


def load_settings(path: str | Path) -> Settings:
    """Read, parse and validate the YAML file at ``path``; raise ``ConfigError`` if it is bad."""
    name = str(path)
    text = _read_text(name)
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(name, error) from None
    except yaml.YAMLError as error:
        raise ConfigFileError(name, redact_text(str(error).replace("\n", " "))) from None
    except RecursionError:
        # The depth limit should make this unreachable; kept so no input ever gives a trace.
        raise ConfigFileError(name, f"nested too deeply (more than {MAX_DEPTH} levels)") from None
    if data is None:
        # Empty, or only comments: say so rather than report the first missing key.
        raise ConfigFileError(name, "the file holds no settings (missing required key 'targets')")
    return parse_settings(data, name)


def _read_text(name: str) -> str:
    """The file's text, or a one-line ``ConfigFileError`` saying why it cannot be had."""
    path = Path(name)
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigFileError(name, "no such file") from None
    except IsADirectoryError:
        raise ConfigFileError(name, "is a directory, not a file") from None
    except PermissionError:
        raise ConfigFileError(name, "permission denied") from None
    except OSError as error:
        raise ConfigFileError(name, error.strerror or str(error)) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigFileError(name, f"larger than {MAX_FILE_BYTES // 2**20} MiB; not a config")
    if b"\x00" in raw:
        raise ConfigFileError(name, "binary file (contains NUL bytes), not YAML text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigFileError(name, f"not UTF-8 text (bad byte at offset {error.start})") from None


def parse_settings(data: Mapping[str, Any], source: str) -> Settings:
    """Validate already-parsed ``data``; ``source`` names where it came from, for messages."""
    if not isinstance(data, Mapping):
        raise ConfigFileError(source, f"expected a mapping at the top level, got {_kind(data)}")
    try:
        return Settings.model_validate(data)
    except ValidationError as error:
        raise _config_error(error.errors()[0], data) from None


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that refuses duplicate keys, which plain YAML silently resolves to the last,
    nesting deeper than ``MAX_DEPTH`` and aliases that expand past ``MAX_EXPANDED_NODES``."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        # The composer recurses once per level: refuse depth before Python's stack runs out.
        if self._depth >= MAX_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested more than {MAX_DEPTH} levels deep",
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None and _expanded_size(node) > MAX_EXPANDED_NODES:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"aliases expand to more than {MAX_EXPANDED_NODES:,} values (an alias bomb?)",
                node.start_mark,
            )
        return node


def _expanded_size(root: yaml.Node) -> int:
    """Values the document holds once every alias is expanded, as validation will see it.

    Aliases share one node object, so sizes are memoised by identity: linear in the file's
    own size however large the expansion. Iterative (post-order), as the depth is bounded by
    ``MAX_DEPTH`` but a list may be long.
    """
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if children_done or not children:
            total = 1 + sum(sizes.get(id(child), 0) for child in children)
            sizes[id(node)] = min(total, MAX_EXPANDED_NODES + 1)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _syntax_error(name: str, error: yaml.MarkedYAMLError) -> ConfigFileError:
    mark = error.problem_mark or error.context_mark
    where = f"{name}:{mark.line + 1}" if mark is not None else name
    reason = error.problem or error.context or "invalid YAML"
    if mark is not None:
        reason += f" (column {mark.column + 1})"
    return ConfigFileError(where, redact_text(reason))


def _config_error(error: ErrorDetails, data: Any) -> ConfigError:
    """One pydantic error as ``ConfigError(dotted.path, reason)``."""
    path = _dotted_path(error["loc"], data, keep_missing=error["type"] == "missing")
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == FIELD_ERROR:
        return ConfigError(_join(path, str(ctx["field"])), redact_text(str(ctx["reason"])))
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        # pydantic quotes the discriminator's name and lists tags as one quoted string.
        discriminator = str(ctx["discriminator"]).strip("'")
        if kind == "union_tag_not_found":
            return ConfigError(_join(path, discriminator), "missing required key")
        expected = re.findall(r"'([^']*)'", str(ctx["expected_tags"]))
        tag = str(ctx["tag"])
        reason = f"unknown {discriminator} {tag!r}; {suggest(tag, expected)}"
        return ConfigError(_join(path, discriminator), reason)
    if kind == "missing":
        return ConfigError(path, "missing required key")
    # A rejected value is quoted back ("got '...'"): a URL with a password must not be.
    return ConfigError(path, redact_text(_reason(error)))


# pydantic's wording -> the shorter wording of a config error ("must be >= 0 (got -1)").
_REWORDS = (
    (r"^Value error, ", ""),
    (r"^\w+ should ", "must "),
    (r"greater than or equal to ", ">= "),
    (r"less than or equal to ", "<= "),
    (r"greater than ", "> "),
    (r"less than ", "< "),
    (r"a valid tuple", "a list"),
    (r" after validation", ""),
    # "must be a valid integer, unable to parse string as an integer": the tail adds nothing.
    (r"^(must be a valid \w+), unable to .*$", r"\1"),
)


def _reason(error: ErrorDetails) -> str:
    message = error["msg"]
    for pattern, replacement in _REWORDS:
        message = re.sub(pattern, replacement, message)
    message = message[:1].lower() + message[1:]
    value = error.get("input")
    if error["type"] != "value_error" and isinstance(value, str | int | float | bool):
        message += f" (got {value!r})"
    return message


def _dotted_path(loc: Sequence[int | str], data: Any, *, keep_missing: bool) -> str:
    """``('targets', 0, 'asg', 'min_units')`` -> ``targets[0].min_units``.

    pydantic puts a union's tag ('asg') and validator names in ``loc``; they are not keys of
    the YAML, so walk the input alongside and keep only the steps that exist in it (plus a
    missing key at the end, which by definition does not).
    """
    path = ""
    node = data
    for index, step in enumerate(loc):
        if isinstance(node, Mapping) and step in node:
            path = _join(path, _key(step))
            node = node[step]
        elif isinstance(node, list | tuple) and isinstance(step, int) and 0 <= step < len(node):
            path += f"[{step}]"
            node = node[step]
        elif keep_missing and index == len(loc) - 1:
            path = _join(path, _key(step))
    return path


def _key(step: int | str) -> str:
    text = str(step)
    return text if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", text) else f"[{text!r}]"


def _join(path: str, suffix: str) -> str:
    if not suffix:
        return path
    if not path or suffix.startswith("["):
        return path + suffix
    return f"{path}.{suffix}"


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return type(value).__name__
