"""Sendstream: self-hosted email automation.

The package is one application with several process roles (`up`, `server`,
`worker`, `smtp`); see ARCHITECTURE.md. `core` holds the platform primitives and
imports no domain; each domain package owns its models' behaviour, API and jobs.
"""

__version__ = "0.1.0"
