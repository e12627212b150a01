"""Compiled templates and rendering: no database, no I/O.

A `Bundle` is a version with the layout and partials it uses (their active
versions, loaded by the service). `compile_bundle` turns it into a
`CompiledTemplate`, kept in a per-process LRU keyed by every version id in
the bundle, so a campaign compiles once and a new partial version takes
effect on the next `get_renderer` call. `CompiledTemplate.render` may be
called any number of times, from any thread, without touching the database.

One message renders as: subject, HTML (then the layout's HTML with the
result as `{{ content }}`), text (then the layout's text, when it has one),
extra header values. Subject and header values are one line (line breaks
become spaces). Without a text source the text part is made from the final
HTML. CSS is inlined once at compile time when provably equivalent, else
after each render (css.py). Limits: sandbox.py.

Context (docs/templates.md): `contact` (the contact as the API shows it, or
{}), `data` (per-recipient data of the send), `message` (`id` ... when the
delivery pipeline knows them), `locale` and `timezone` (the contact's, else
`data.locale`/`data.timezone`, else the workspace defaults); and as
top-level names `email`, `first_name`, `last_name` of the contact, then
every key of `data` (data wins over the contact names).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, cast

from jinja2 import BaseLoader, Environment, Template, TemplateNotFound, UndefinedError
from jinja2 import TemplateSyntaxError as JinjaSyntaxError
from jinja2.exceptions import SecurityError
from markupsafe import Markup

from sendstream.core.settings import TemplateSettings, get_settings
from sendstream.templates import css, diagnostics
from sendstream.templates.deadline import LimitExceeded, check_deadline, deadline
from sendstream.templates.diagnostics import SourceInfo
from sendstream.templates.errors import (
    TemplateReferenceInvalid,
    TemplateRenderError,
    TemplateRenderLimit,
    TemplateSecurityError,
    TemplateSyntaxError,
    TemplateUndefinedVariable,
)
from sendstream.templates.filters import FilterError
from sendstream.templates.html_text import html_to_text
from sendstream.templates.sandbox import RenderLimits, SendstreamSandbox
from sendstream.templates.validation import parse, references

# Output chunks between two checks of the output size and the deadline. Each
# chunk is a value already checked against the size limit, so the output can
# pass the limit by at most this many values before the render stops.
_CHUNKS_PER_CHECK = 16

LAYOUT_PLACEHOLDER = Markup("<p>[content: the template's HTML goes here]</p>")


@dataclass(frozen=True)
class VersionSource:
    """What rendering needs of one stored version."""

    template_id: uuid.UUID
    key: str
    kind: str
    version_id: uuid.UUID
    number: int
    subject: str | None = None
    html: str | None = None
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    from_email: str | None = None
    from_name: str | None = None
    reply_to: str | None = None
    layout_key: str | None = None
    strict: bool = False
    inline_css: bool = True


@dataclass(frozen=True)
class Bundle:
    main: VersionSource
    layout: VersionSource | None = None
    partials: Mapping[str, VersionSource] = field(default_factory=dict)

    @property
    def version_ids(self) -> dict[str, uuid.UUID]:
        """Template key -> version id of every version this bundle renders."""
        ids = {key: p.version_id for key, p in self.partials.items()}
        if self.layout is not None:
            ids[self.layout.key] = self.layout.version_id
        ids[self.main.key] = self.main.version_id
        return ids


@dataclass(frozen=True)
class RenderContext:
    contact: Mapping[str, Any] | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    message: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sender:
    email: str
    name: str | None = None


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    html: str | None
    text: str | None
    from_: Sender | None
    reply_to: str | None
    headers: dict[str, str]
    template_version_id: uuid.UUID


@dataclass(frozen=True)
class Defaults:
    locale: str = "en"
    timezone: str = "UTC"


class _Loader(BaseLoader):
    """Sources by name; the file name of each (what tracebacks show) is
    unique across both environments of a compiled template."""

    def __init__(self, sources: Mapping[str, tuple[str, str]]) -> None:
        self.sources = sources

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        found = self.sources.get(template)
        if found is None:
            raise TemplateNotFound(template)
        source, filename = found
        return source, filename, lambda: True


def _one_line(value: str) -> str:
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())


class CompiledTemplate:
    """A bundle compiled once; `render()` is pure and reusable."""

    def __init__(self, bundle: Bundle, limits: RenderLimits, defaults: Defaults) -> None:
        self.bundle = bundle
        self.limits = limits
        self.defaults = defaults
        main, layout = bundle.main, bundle.layout
        self.template_id = main.template_id
        self.version_id = main.version_id
        self.version_number = main.number
        self.key = main.key
        self.version_ids = bundle.version_ids
        self._names: dict[str, SourceInfo] = {}
        html_sources: dict[str, tuple[str, str]] = {}
        text_sources: dict[str, tuple[str, str]] = {}

        def add(
            sources: dict[str, tuple[str, str]],
            name: str,
            info: SourceInfo,
            compiled: str | None = None,
        ) -> None:
            filename = f"<{info.template or main.key}:{info.field}:{name}>"
            sources[name] = (compiled if compiled is not None else info.source, filename)
            self._names[filename] = info

        self._inline_at_render = False
        self._fallback = SourceInfo("html" if main.html is not None else "text", None, "")
        if main.html is not None:
            compiled_html, line_map = self._prepare_css(main.html, main.inline_css, layout)
            add(html_sources, "@html", SourceInfo("html", None, main.html, line_map), compiled_html)
        if main.text is not None:
            add(text_sources, "@text", SourceInfo("text", None, main.text))
        if main.subject is not None:
            add(text_sources, "@subject", SourceInfo("subject", None, main.subject))
        for name, value in main.headers.items():
            add(text_sources, f"@header:{name}", SourceInfo(f"headers.{name}", None, value))
        if layout is not None and layout.html is not None:
            add(html_sources, "@layout", SourceInfo("html", layout.key, layout.html))
        if layout is not None and layout.text is not None:
            add(text_sources, "@layout", SourceInfo("text", layout.key, layout.text))
        for key, partial in bundle.partials.items():
            html_side = partial.html if partial.html is not None else partial.text
            text_side = partial.text if partial.text is not None else partial.html
            if html_side is not None:
                field_name = "html" if partial.html is not None else "text"
                add(html_sources, key, SourceInfo(field_name, key, html_side))
            if text_side is not None:
                field_name = "text" if partial.text is not None else "html"
                add(text_sources, key, SourceInfo(field_name, key, text_side))

        self._html_env = SendstreamSandbox(
            html=True, strict=main.strict, loader=_Loader(html_sources), limits=limits
        )
        self._text_env = SendstreamSandbox(
            html=False, strict=main.strict, loader=_Loader(text_sources), limits=limits
        )
        self._mentions: dict[str, bool] = {}
        self._sources = tuple(
            source for sources in (html_sources, text_sources) for source, _ in sources.values()
        )
        # Compile everything now: a stored source that no longer compiles
        # fails here, once, and no render ever compiles.
        self._compiled_html = {n: self._compile(self._html_env, n) for n in html_sources}
        self._compiled_text = {n: self._compile(self._text_env, n) for n in text_sources}
        # Both environments hold the same globals; merged into a render's
        # variables once, not copied by Jinja for every part (see `_generate`).
        self._globals = dict(self._text_env.globals)
        self._global_keys = set(self._globals)

    def _prepare_css(
        self, html: str, inline_css: bool, layout: VersionSource | None
    ) -> tuple[str, css.LineMap]:
        if not inline_css:
            return html, css.LineMap()
        # Inlining the source is only provably right when the source is the
        # whole document: no layout around it, no partial inside it.
        self_contained = layout is None and not any(
            True for _ in references(parse(html, html=True))
        )
        if self_contained:
            inlined = css.inline_source(html)
            if inlined is not None:
                return inlined.source, inlined.lines
        self._inline_at_render = True
        return html, css.LineMap()

    def _compile(self, env: SendstreamSandbox, name: str) -> Template:
        try:
            return env.get_template(name)
        except JinjaSyntaxError as exc:
            info = self._names.get(exc.filename or "", self._fallback)
            raise TemplateSyntaxError([diagnostics.syntax_entry(info, exc)]) from None

    def mentions(self, name: str) -> bool:
        """Whether any source of the bundle contains `name`, so a caller can
        skip building a value no template reads (a signed link costs a MAC).
        Textual, so it errs only towards yes."""
        found = self._mentions.get(name)
        if found is None:
            found = self._mentions[name] = any(name in source for source in self._sources)
        return found

    # --- rendering

    def variables(self, context: RenderContext) -> dict[str, Any]:
        contact = dict(context.contact or {})
        data = dict(context.data)
        values: dict[str, Any] = {}
        if contact:
            for name in ("email", "first_name", "last_name"):
                values[name] = contact.get(name)
        values.update(data)
        values.update(
            contact=contact,
            data=data,
            message=dict(context.message),
            locale=_first_text(contact.get("locale"), data.get("locale"), self.defaults.locale),
            timezone=_first_text(
                contact.get("timezone"), data.get("timezone"), self.defaults.timezone
            ),
        )
        if self.bundle.main.kind == "layout":
            # A layout rendered on its own (a preview) shows where templates go.
            values.setdefault("content", LAYOUT_PLACEHOLDER)
        return values

    def render(self, context: RenderContext | None = None) -> RenderedMessage:
        """Render every part for one recipient. Raises the template errors of
        errors.py, each with field, template, line and column."""
        values = {**self._globals, **self.variables(context or RenderContext())}
        part = self._fallback

        def run(name: str, env_html: bool, extra: Mapping[str, Any] | None = None) -> str:
            nonlocal part
            compiled = (self._compiled_html if env_html else self._compiled_text)[name]
            part = self._names[compiled.filename or ""]
            return self._run(compiled, {**values, **extra} if extra else values)

        html_out = text_out = None
        try:
            with deadline(self.limits.timeout_ms):
                if "@html" in self._compiled_html:
                    html_out = run("@html", True)
                    if "@layout" in self._compiled_html:
                        # The body's own render escaped it already.
                        body = Markup(html_out)  # noqa: S704
                        html_out = run("@layout", True, {"content": body})
                if "@text" in self._compiled_text:
                    text_out = run("@text", False)
                    if "@layout" in self._compiled_text:
                        text_out = run("@layout", False, {"content": text_out})
                subject_out = ""
                if "@subject" in self._compiled_text:
                    subject_out = _one_line(run("@subject", False))
                headers = {
                    name: _one_line(run(f"@header:{name}", False))
                    for name in self.bundle.main.headers
                }
        except Exception as exc:  # every template fault becomes one of ours
            raise self._translate(exc, part) from None
        if html_out is not None:
            if text_out is None:
                text_out = html_to_text(html_out)
            if self._inline_at_render:
                html_out = css.inline_rendered(html_out)
        main = self.bundle.main
        return RenderedMessage(
            subject=subject_out,
            html=html_out,
            text=text_out,
            from_=Sender(main.from_email, main.from_name) if main.from_email else None,
            reply_to=main.reply_to,
            headers=headers,
            template_version_id=main.version_id,
        )

    def _run(self, template: Template, values: Mapping[str, Any]) -> str:
        """`template` rendered with `values` (which hold the globals too).

        This is `Template.generate` without its copies (Jinja builds a new
        dict of the globals and the variables, and a set of the globals'
        names, for every part of every message) and without its generator
        around the template's own: `values` is shared read-only (a
        template's assignments go to the context's own `vars`), and an
        exception is rewritten to the template's lines by
        `handle_exception` exactly as `generate` does."""
        env = template.environment
        ctx = env.context_class(env, cast(dict[str, Any], values), template.name, template.blocks)
        ctx.globals_keys = self._global_keys
        limit = self.limits.max_output_bytes
        parts: list[str] = []
        size = 0
        chunks = cast(Generator[str], template.root_render_func(ctx))
        try:
            # Output is taken _CHUNKS_PER_CHECK chunks at a time (islice and
            # list run in C): a Python step per chunk was a fifth of a render.
            while batch := list(islice(chunks, _CHUNKS_PER_CHECK)):
                size += sum(map(len, batch))
                try:
                    if size > limit:
                        raise LimitExceeded(f"the output is larger than {limit} bytes")
                    check_deadline()
                except LimitExceeded as exc:
                    # Raised at the template's own yield, so the error
                    # carries the line that was producing output.
                    chunks.throw(exc)
                    raise  # the template swallowed it: still over the limit
                parts += batch
        except Exception:
            env.handle_exception()  # raises it, rewritten to the template's lines
            raise
        finally:
            chunks.close()
        result = "".join(parts)
        if not result.isascii() and len(result.encode()) > limit:
            raise LimitExceeded(f"the output is larger than {limit} bytes")
        return result

    def _translate(self, exc: Exception, part: SourceInfo) -> Exception:
        def where(message: str, **extra: Any) -> list[dict[str, Any]]:
            found = diagnostics.runtime_entry(exc, self._names, part, message)
            found.update(extra)
            return [found]

        if isinstance(exc, LimitExceeded):
            return TemplateRenderLimit(where(str(exc)))
        if isinstance(exc, RecursionError | MemoryError):
            return TemplateRenderLimit(where("macros or includes call each other too deeply"))
        if isinstance(exc, SecurityError):
            return TemplateSecurityError(where(str(exc)))
        if isinstance(exc, UndefinedError):
            message = exc.message or "undefined variable"
            return TemplateUndefinedVariable(where(message, name=_undefined_name(message)))
        if isinstance(exc, TemplateNotFound):
            return TemplateReferenceInvalid(
                where(f"no partial {exc.name!r} in this workspace", key=exc.name)
            )
        if isinstance(exc, FilterError):
            return TemplateRenderError(where(str(exc)))
        return TemplateRenderError(where(f"{type(exc).__name__}: {exc}"))


def _first_text(*values: Any) -> str:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def _undefined_name(message: str) -> str | None:
    found = re.search(r"'([^']+)' is undefined", message) or re.search(
        r"has no (?:attribute|element) '?([^']+?)'?$", message
    )
    return found.group(1) if found else None


# --- the per-process cache


class TemplateCache:
    """Compiled templates by bundle (every version id in it), limits and
    defaults; least recently used dropped past `size`."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[tuple[Any, ...], CompiledTemplate] = OrderedDict()
        self._lock = threading.Lock()
        self.compiled = 0

    def get(self, bundle: Bundle, limits: RenderLimits, defaults: Defaults) -> CompiledTemplate:
        key = (tuple(sorted(bundle.version_ids.items())), limits, defaults)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        compiled = CompiledTemplate(bundle, limits, defaults)
        with self._lock:
            self.compiled += 1
            self._items[key] = compiled
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return compiled

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_cache: list[TemplateCache] = []


def template_cache() -> TemplateCache:
    if not _cache:
        _cache.append(TemplateCache(get_settings().templates.cache_size))
    return _cache[0]


def compile_bundle(bundle: Bundle, settings: TemplateSettings | None = None) -> CompiledTemplate:
    """The compiled template of `bundle`, from the process cache."""
    settings = settings or get_settings().templates
    return template_cache().get(
        bundle,
        RenderLimits.from_settings(settings),
        Defaults(settings.default_locale, settings.default_timezone),
    )
