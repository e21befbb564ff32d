"""Reading the dashboard's HTML in tests: rows, links and text, with the standard library only."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any

from tests.suite import checkout_body


class Page(HTMLParser):
    """A parsed page: every element's attributes, and its text without tags."""

    def __init__(self, source: str) -> None:
        super().__init__(convert_charrefs=True)
        self.source = source
        self.elements: list[tuple[str, dict[str, str]]] = []
        self._text: list[str] = []
        self.feed(source)
        self.text = re.sub(r"\s+", " ", "".join(self._text)).strip()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_data(self, data: str) -> None:
        self._text.append(data)

    def attrs(self, tag: str, **match: str) -> list[dict[str, str]]:
        """Attributes of every ``tag`` whose attributes include ``match`` (``class_`` for class)."""
        wanted = {k.rstrip("_").replace("_", "-"): v for k, v in match.items()}
        return [
            a
            for t, a in self.elements
            if t == tag
            and all(v in a.get(k, "").split() or a.get(k) == v for k, v in wanted.items())
        ]

    def row_ids(self) -> list[str]:
        """The checkout ids of the list's rows, top to bottom."""
        return [a["data-id"] for a in self.attrs("tr", class_="row")]

    def link(self, **match: str) -> str:
        """The ``href`` of the one link matching ``match``."""
        found = self.attrs("a", **match)
        assert len(found) == 1, f"{len(found)} links match {match}"
        return found[0]["href"]


def body(
    customer_id: str, *, member: bool = True, sku: str = "SKU-001", name: str = "Ada Lovelace"
) -> dict[str, Any]:
    """A checkout request for ``customer_id``."""
    request = checkout_body(
        customer_id=customer_id,
        member=member,
        items=[{"sku": sku, "quantity": 1, "unit_price": "10.00"}],
    )
    request["customer"]["name"] = name
    return request
