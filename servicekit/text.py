"""String constraints shared by the services' request models."""

from typing import Annotated

from fastapi import Path
from pydantic import StringConstraints

# Identifiers and names reach logs, e-mail headers and PostgreSQL TEXT columns (which reject
# NUL), so control characters are refused at the edge rather than failing deep inside.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"

PlainText = Annotated[str, StringConstraints(pattern=NO_CONTROL_CHARACTERS)]

# A checkout id in a path (``POST /checkouts/{checkout_id}/void``): the orchestrator's are UUIDs.
CheckoutIdPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=NO_CONTROL_CHARACTERS,
        examples=["3f0c2a9e-8a1c-4c7a-9a55-2f1d5f2b7c11"],
    ),
]
