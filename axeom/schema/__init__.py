"""Schemas from the user's own library, adapted once at registration.

``adapt(obj)`` accepts a pydantic model class, a msgspec ``Struct`` class, a
dataclass, a ``TypedDict``, a JSON-Schema dict (checked with the
``jsonschema`` library: ``pip install axeom[jsonschema]``), or any object with
a ``parse(value)`` or ``validate(value)`` method (looked up in that order)
that returns the valid value or raises. The result is a ``Schema``: one
``validate``, one error shape (``ValidationFailure.errors``), one
``json_schema()`` made by each library's own generator.

No schema library is imported by Axeom itself: pydantic and msgspec are
imported only when the user's type comes from them (they are the user's
dependencies, not ours).
"""

from ._adapt import adapt
from ._base import Schema
from ._encode import encode_object
from ._failure import ErrorDict, ValidationFailure

__all__ = ["ErrorDict", "Schema", "ValidationFailure", "adapt", "encode_object"]
