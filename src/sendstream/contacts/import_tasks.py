"""Placeholder: the import job kinds."""
