"""Options declared as dataclasses: a source kind says what it takes, one validator reads it.

A kind's options are a frozen dataclass next to its `poll()` (see `watcher.sources.listing`):

    @dataclass(frozen=True)
    class ListingOptions:
        url_key: ClassVar[str | None] = "url"      # the key holding the page polled first
        item_links: str = option("selector", required=True, doc="CSS selector of the item links")
        item_url: str | None = option("template", None, doc="...")

Each field's `option(reader, default, ...)` says how its TOML value is read: `reader` names a
method of the configuration validator (`config.Validator`: string, boolean, integer, seconds,
selector, url, dotted, json_path, template, hosts; `read_NAME` first, as `read_path`), which
gives today's messages
(`sources.toml:12: source "x": key "item_links" is ...`). `key` is the TOML key when it
differs from the field's name; `required` makes a missing key an error; `always` runs the
reader even when the key is absent (it computes the default: `state_dir`, `jsonl`); `extra`
goes to the reader (`minimum=1`). `read_options` builds the dataclass; `option_keys` lists the keys for
the unknown-key check and the "a json source needs: ..." message.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field
from typing import Any, Protocol

__all__ = ["Option", "OptionReader", "option", "option_keys", "options_doc", "read_options", "read_values"]

# Readers that take the field's default as their fourth argument (the others only run when
# the key is present, and the default is used as is when it is not).
_WITH_DEFAULT = ("string", "boolean", "integer", "seconds", "severity")


@dataclass(frozen=True)
class Option:
    """How one field is read from TOML."""

    reader: str
    key: str | None = None
    required: bool = False
    doc: str = ""
    always: bool = False
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def option(reader: str, default: Any = MISSING, *, key: str | None = None, required: bool = False,
           doc: str = "", always: bool = False, factory: Any = MISSING, **extra: Any) -> Any:
    """A dataclass field read by `reader` (see the module docstring); `factory` makes a
    mutable default (`dict`)."""
    meta = {"option": Option(reader, key, required, doc, always, extra)}
    if factory is not MISSING:
        return field(default_factory=factory, metadata=meta)
    if required or default is MISSING:
        return field(metadata=meta)
    return field(default=default, metadata=meta)


class OptionReader(Protocol):
    """What `read_options` needs from the configuration validator."""

    def fail(self, where: Any, key: str | None, message: str) -> Exception: ...


def _options(cls: type) -> list[tuple[dataclasses.Field[Any], Option]]:
    return [(f, f.metadata["option"]) for f in dataclasses.fields(cls) if "option" in f.metadata]


def option_keys(cls: type) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required keys, optional keys) of an options dataclass, as written in TOML."""
    required = tuple(o.key or f.name for f, o in _options(cls) if o.required)
    optional = tuple(o.key or f.name for f, o in _options(cls) if not o.required)
    return required, optional


def read_options(cls: type, reader: OptionReader, where: Any, data: Mapping[str, Any]) -> Any:
    """An instance of `cls` from the TOML table `data` (unknown keys are checked by the caller);
    a ValueError of the dataclass's own checks ("retry_max must not be ...") is reported
    against the key its first word names."""
    try:
        return cls(**read_values(cls, reader, where, data))
    except ValueError as exc:
        field_name, _, message = str(exc).partition(" ")
        keys = {f.name: o.key or f.name for f, o in _options(cls)}
        if field_name in keys:
            raise reader.fail(where, keys[field_name], message) from None
        raise reader.fail(where, None, str(exc)) from None


def read_values(cls: type, reader: OptionReader, where: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the options of `cls` present in `data` (or `always` read), by field name:
    for a dataclass that has fields besides its options (`SourceConfig`)."""
    values: dict[str, Any] = {}
    for f, opt in _options(cls):
        key = opt.key or f.name
        if key not in data and not opt.always:
            if opt.required:
                raise reader.fail(where, None, f'key "{key}" is missing{_needs(cls)}')
            continue
        read = getattr(reader, f"read_{opt.reader}", None) or getattr(reader, opt.reader)
        default = None if f.default is MISSING else f.default
        args = (default,) if opt.reader in _WITH_DEFAULT else ()
        values[f.name] = read(where, data, key, *args, **opt.extra)
    return values


def _needs(cls: type) -> str:
    """" (a json source needs: endpoint, items)" for a source kind's options, else ""."""
    if not hasattr(cls, "url_key"):
        return ""
    needs = ((cls.url_key,) if cls.url_key else ()) + option_keys(cls)[0]
    return f' (a {where_kind(cls)} source needs: {", ".join(needs)})'


def where_kind(cls: type) -> str:
    """`ListingOptions` -> "listing" (for messages)."""
    name = cls.__name__
    return name[:-len("Options")].lower() if name.endswith("Options") else name


def options_doc(cls: type) -> list[tuple[str, str, str]]:
    """(key, default or "required", doc) for each option: what the README tables list."""
    rows = []
    for f, opt in _options(cls):
        if opt.required:
            default = "required"
        elif f.default is not MISSING:
            default = repr(f.default)
        else:
            default = repr(f.default_factory()) if f.default_factory is not MISSING else "-"
        rows.append((opt.key or f.name, default, opt.doc))
    return rows
