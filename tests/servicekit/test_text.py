"""servicekit.text: identifiers and names refuse control characters at the edge."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from servicekit.text import PlainText


class Named(BaseModel):
    name: PlainText


@pytest.mark.parametrize("value", ["", "SKU-001", "Ada Lovelace", "Zoë Ångström 東京", "a\u00a0b"])
def test_plain_text_accepts_printable_text(value: str) -> None:
    """Printable text, including non-ASCII letters, passes."""
    assert Named(name=value).name == value


@pytest.mark.parametrize(
    "value", ["nul\x00", "new\nline", "tab\there", "cr\r", "esc\x1b[0m", "del\x7f"]
)
def test_plain_text_refuses_control_characters(value: str) -> None:
    """Any C0 control character or DEL is refused, naming the field and not echoing the value."""
    with pytest.raises(ValidationError) as raised:
        Named(name=value)

    (error,) = raised.value.errors(include_input=False)
    assert error["loc"] == ("name",)
    assert error["type"] == "string_pattern_mismatch"
