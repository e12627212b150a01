"""Templates: content with immutable versions, layouts and partials,
sandboxed rendering, previews.

- A template (`kind` template, layout or partial) points at its active
  version; versions are never changed, so a message names the exact version
  it was rendered from. Deleting archives: versions stay.
- Rendering (`render.py`) happens in a hardened Jinja sandbox
  (`sandbox.py`) with a time limit and an output size limit; every fault
  comes back as a problem with field, line and column (`diagnostics.py`).
- A layout wraps a template's HTML as `{{ content }}`; partials are included
  by key, only from the same workspace.
- The delivery pipeline calls `template_service.get_renderer(...)` once per
  batch and `render(RenderContext(...))` per message, without the database.
- Events: `template.created`, `template.version_created`,
  `template.version_activated`, `template.archived`.
"""
