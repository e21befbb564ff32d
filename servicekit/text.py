"""String constraints shared by the services' request models."""

from typing import Annotated

from pydantic import StringConstraints

# Identifiers and names reach logs, e-mail headers and PostgreSQL TEXT columns (which reject
# NUL), so control characters are refused at the edge rather than failing deep inside.
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"

PlainText = Annotated[str, StringConstraints(pattern=NO_CONTROL_CHARACTERS)]
