"""ORM classes, one module per class. Importing this package registers every
table on `Base.metadata` (Alembic autogenerate and the migration test use it)."""

from sendstream.models.base import Base

__all__ = ["Base"]
