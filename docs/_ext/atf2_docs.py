"""Sphinx directives that render atf2's binary layout from ``atf2.layout`` itself.

The format page must never disagree with the code, so its tables are not
typed by hand: offsets, sizes and types come from the numpy dtypes, code
values from the name tables. The page supplies only the meaning of each
field or code, and the build fails (an error, fatal under ``-W``) when the
meanings name a field or code the layout lacks, or miss one it has.

``.. atf2-struct:: INDEX_EVENT_DTYPE`` followed by ``field: meaning`` lines;
``.. atf2-codes:: DROP_REASON_NAMES`` followed by ``name: meaning`` lines.

The same holds for options: ``.. atf2-params:: atf2.session.Session`` renders
the keyword parameters of a callable (or dataclass) with their defaults, taken
from its signature, so the option tables of the recorder pages list exactly
the options the code accepts.
"""

from __future__ import annotations

import importlib
import re
import inspect

import numpy as np
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

import atf2.layout as layout


def _meanings(directive: SphinxDirective) -> "dict[str, str]":
    """``name: text`` lines of the directive's content (a line without a name continues the previous one)."""
    out: dict = {}
    last = None
    for line in directive.content:
        if not line.strip():
            continue
        head, sep, text = line.partition(":")
        if sep and head.strip() and " " not in head.strip() and not line[0].isspace():
            last = head.strip()
            if last in out:
                raise directive.error(f"{directive.name}: {last!r} is described twice")
            out[last] = text.strip()
        elif last is not None:
            out[last] += " " + line.strip()
        else:
            raise directive.error(f"{directive.name}: expected 'name: meaning', got {line!r}")
    return out


def _check_names(directive: SphinxDirective, what: str, names: list, described: dict) -> None:
    missing = [n for n in names if n not in described]
    unknown = [n for n in described if n not in names]
    if missing or unknown:
        raise directive.error(
            f"{directive.name} {what}: the page and the code disagree: "
            f"not described: {missing or 'none'}; not in the code: {unknown or 'none'}"
        )


def type_name(dt: np.dtype) -> str:
    """A C-like spelling of one field's numpy type: ``u32``, ``char[4]``, ``u8[24]``."""
    if dt.subdtype is not None:
        base, shape = dt.subdtype
        return f"{type_name(base)}[{int(np.prod(shape))}]"
    if dt.kind == "S":
        return f"char[{dt.itemsize}]"
    return f"{dt.kind}{dt.itemsize * 8}"


def struct_rows(dtype: np.dtype) -> "list[tuple[int, int, str, str]]":
    """(offset, size, type, field) of every field of a structured dtype, in offset order."""
    rows = []
    for name in dtype.names:
        field_dtype, offset = dtype.fields[name][:2]
        rows.append((offset, field_dtype.itemsize, type_name(field_dtype), name))
    return sorted(rows)


def _list_table(title: str, header: list, rows: list, widths: str) -> "list[str]":
    lines = [f".. list-table:: {title}", "   :header-rows: 1", f"   :widths: {widths}", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return lines


class StructDirective(SphinxDirective):
    """One structured dtype of ``atf2.layout`` as an offset / size / type / field / meaning table."""

    required_arguments = 1
    has_content = True
    option_spec = {"title": directives.unchanged}

    def run(self):
        name = self.arguments[0]
        dtype = getattr(layout, name, None)
        if not isinstance(dtype, np.dtype) or dtype.names is None:
            raise self.error(f"atf2-struct: atf2.layout has no structured dtype {name!r}")
        rows = struct_rows(dtype)
        described = _meanings(self)
        _check_names(self, name, [r[3] for r in rows], described)
        title = self.options.get("title", f"``{name}``: {dtype.itemsize} bytes")
        table = [[str(off), str(size), f"``{t}``", f"``{field}``", described[field] or ""] for off, size, t, field in rows]
        text = _list_table(title, ["offset", "size", "type", "field", "meaning"], table, "8 6 10 18 58")
        return self.parse_text_to_nodes("\n".join(text))


class CodesDirective(SphinxDirective):
    """A ``{code: name}`` table of ``atf2.layout`` (event kinds, drop reasons, value tags) with meanings."""

    required_arguments = 1
    has_content = True
    option_spec = {"title": directives.unchanged}

    def run(self):
        name = self.arguments[0]
        table = getattr(layout, name, None)
        if not isinstance(table, dict):
            raise self.error(f"atf2-codes: atf2.layout has no code table {name!r}")
        described = _meanings(self)
        _check_names(self, name, list(table.values()), described)
        rows = [[str(code), f"``{label}``", described[label]] for code, label in sorted(table.items())]
        text = _list_table(self.options.get("title", f"``{name}``"), ["code", "name", "meaning"], rows, "8 20 72")
        return self.parse_text_to_nodes("\n".join(text))


def _resolve(dotted: str):
    """``package.module.Class.method`` -> the object (the longest importable module prefix, then attributes)."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"no module in {dotted!r}")


class ParamsDirective(SphinxDirective):
    """The keyword parameters of a callable, with defaults from its signature, and meanings."""

    required_arguments = 1
    has_content = True
    option_spec = {"title": directives.unchanged, "skip": directives.unchanged}

    def run(self):
        target = self.arguments[0]
        try:
            params = inspect.signature(_resolve(target)).parameters.values()
        except (ImportError, AttributeError, ValueError, TypeError) as exc:
            raise self.error(f"atf2-params: cannot read the signature of {target!r}: {exc}") from None
        skip = set(self.options.get("skip", "").split())
        kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        params = [p for p in params if p.kind in kinds and p.name not in skip and p.name != "self"]
        described = _meanings(self)
        _check_names(self, target, [p.name for p in params], described)
        rows = []
        for p in params:
            default = "(required)" if p.default is inspect.Parameter.empty else f"``{p.default!r}``"
            rows.append([f"``{p.name}``", default, described[p.name]])
        text = _list_table(self.options.get("title", f"``{target}``"), ["option", "default", "meaning"], rows, "20 14 66")
        return self.parse_text_to_nodes("\n".join(text))


def setup(app):
    app.add_directive("atf2-params", ParamsDirective)
    app.add_directive("atf2-struct", StructDirective)
    app.add_directive("atf2-codes", CodesDirective)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


_LITERAL_OR_STAR = re.compile(r"``.*?``|\*")


def _rst_safe(text: "str | None") -> "str | None":
    """Help text as reStructuredText: a bare ``*`` (``'mod.*'``, ``*.partial``) is literal, not emphasis."""
    if not text:
        return text
    return _LITERAL_OR_STAR.sub(lambda m: m.group(0) if m.group(0) != "*" else r"\*", text)


def cli_parser():
    """``atf2.cli.build_parser()`` for sphinx-argparse, its help texts made safe as reStructuredText.

    Every command and option is the real parser's; only the text is escaped
    (the terminal ``--help`` stays as it is).
    """
    from atf2.cli import build_parser

    parser = build_parser()
    stack = [parser]
    while stack:
        p = stack.pop()
        p.description = _rst_safe(p.description)
        for action in p._actions:
            action.help = _rst_safe(action.help)
            for choice in getattr(action, "_choices_actions", ()):
                choice.help = _rst_safe(choice.help)
            if isinstance(action.choices, dict):
                stack.extend(action.choices.values())
    return parser
