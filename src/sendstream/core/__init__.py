"""Platform primitives every domain stands on.

Contracts:
- `core` imports no domain package (a test walks the imports).
- Settings are read through `get_settings()`, never at import time.
- Domain code never commits: the HTTP route class, the job runner or the CLI
  command commits once at the edge; events and jobs written in that session
  commit or roll back with the change that caused them.
"""
