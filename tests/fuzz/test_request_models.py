"""Property tests of the four request models: any input is accepted or refused cleanly, and the
idempotency fingerprint of an accepted request depends on its meaning, not on its key order.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from email_service.schemas import EmailCreate
from orchestrator.schemas import CheckoutCreate
from rewards_service.schemas import TransactionCreate
from servicekit.idempotency import fingerprint
from warehouse_service.schemas import ReservationCreate

MODELS: dict[str, type[BaseModel]] = {
    "checkout": CheckoutCreate,
    "reservation": ReservationCreate,
    "transaction": TransactionCreate,
    "email": EmailCreate,
}
PROPERTIES = settings(max_examples=200, deadline=None)

# --- arbitrary JSON-ish input, and input shaped like each model ---------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.decimals(allow_nan=False, allow_infinity=False).map(str)
    | st.text(max_size=20)
)
jsonish = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def shaped(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Dicts using (some of) a model's keys with plausible or arbitrary values, plus stray keys."""
    keys = st.sampled_from(sorted(fields))
    entries = keys.flatmap(lambda k: st.tuples(st.just(k), fields[k] | jsonish))
    stray = st.tuples(st.text(max_size=8), jsonish)
    return st.lists(entries | stray, max_size=len(fields) + 2).map(dict) | jsonish


customer_like = shaped(
    {
        "id": st.text(max_size=210),
        "email": st.emails().map(str) | st.text(max_size=30),
        "name": st.text(max_size=210),
        "rewards_member": st.booleans(),
    }
)
line_like = shaped(
    {
        "sku": st.text(max_size=70),
        "quantity": st.integers(-5, 1005),
        "unit_price": st.decimals(places=3, min_value=-1, max_value=1_000_001).map(str)
        | st.floats(-1, 1_000_001)
        | st.sampled_from(["NaN", "Infinity", "-0", "1e6", "1E+2", "0.001"]),
    }
)
SHAPED: dict[str, st.SearchStrategy[Any]] = {
    "checkout": shaped(
        {
            "customer": customer_like,
            "items": st.lists(line_like, max_size=3),
            "currency": st.sampled_from(["USD", "usd", "EURO", ""]) | st.text(max_size=4),
        }
    ),
    "reservation": shaped(
        {
            "checkout_id": st.text(max_size=70),
            "items": st.lists(
                shaped({"sku": st.text(max_size=70), "quantity": st.integers(-5, 1005)}), max_size=3
            ),
        }
    ),
    "transaction": shaped(
        {
            "checkout_id": st.text(max_size=70),
            "points": st.integers(-5, 10**13) | st.floats() | st.text(max_size=5),
        }
    ),
    "email": shaped(
        {
            "to": st.emails().map(str) | st.text(max_size=30),
            "template": st.sampled_from(["order_confirmation", "order_cancelled", "x"]),
            "checkout_id": st.text(max_size=70),
            "context": jsonish,
        }
    ),
}


def _accepts_or_refuses(model: type[BaseModel], value: Any) -> None:
    try:
        model.model_validate(value)
    except ValidationError:
        pass
    try:  # the HTTP path: the body as JSON text
        model.model_validate_json(json.dumps(value))
    except ValidationError:
        pass


@pytest.mark.parametrize("name", sorted(MODELS))
@PROPERTIES
@given(data=st.data())
def test_any_input_is_accepted_or_refused_with_a_validation_error(name: str, data: Any) -> None:
    """Arbitrary and near-valid JSON either validates or raises ValidationError, nothing else."""
    _accepts_or_refuses(MODELS[name], data.draw(SHAPED[name]))


@pytest.mark.parametrize("name", sorted(MODELS))
@PROPERTIES
@given(raw=st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_body_bytes_are_accepted_or_refused_with_a_validation_error(
    name: str, raw: bytes
) -> None:
    """Arbitrary bytes as a JSON body raise ValidationError, never another exception."""
    try:
        MODELS[name].model_validate_json(raw)
    except ValidationError:
        pass


# --- valid input: the fingerprint is stable under key reordering --------------------------------

# Valid for every identifier field (customer ids also refuse "/", "." and ".."): letters, digits and
# a few separators.
identifier = st.text(
    alphabet=st.characters(categories=("L", "N")) | st.sampled_from("-_ :"), min_size=1, max_size=64
)
address = st.from_regex(
    r"[a-z0-9]{1,12}(\.[a-z0-9]{1,8})?@[a-z]{1,12}\.(com|org|net)", fullmatch=True
)
price = st.decimals(min_value=0, max_value=1_000_000, places=2)
VALID: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "checkout": st.fixed_dictionaries(
        {
            "customer": st.fixed_dictionaries(
                {"id": identifier, "email": address, "name": identifier},
                optional={"rewards_member": st.booleans()},
            ),
            "items": st.lists(
                st.fixed_dictionaries(
                    {
                        "sku": identifier,
                        "quantity": st.integers(1, 1000),
                        "unit_price": price.map(str),
                    }
                ),
                min_size=1,
                max_size=5,
            ),
        },
        optional={"currency": st.from_regex(r"[A-Z]{3}", fullmatch=True)},
    ),
    "reservation": st.fixed_dictionaries(
        {
            "checkout_id": identifier,
            "items": st.lists(
                st.fixed_dictionaries({"sku": identifier, "quantity": st.integers(1, 1000)}),
                min_size=1,
                max_size=5,
            ),
        }
    ),
    "transaction": st.fixed_dictionaries(
        {"checkout_id": identifier, "points": st.integers(0, 10**12)}
    ),
    "email": st.fixed_dictionaries(
        {
            "to": address,
            "template": st.sampled_from(["order_confirmation", "order_cancelled"]),
            "checkout_id": identifier,
        },
        optional={"context": st.dictionaries(st.text(max_size=8), jsonish, max_size=5)},
    ),
}


def reordered(value: Any, rng: random.Random) -> Any:
    """``value`` with the keys of every object, at every depth, in a random order."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: reordered(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [reordered(item, rng) for item in value]
    return value


def _digest(model: type[BaseModel], value: Any) -> str:
    return fingerprint(model.model_validate(value).model_dump(mode="json"))


@pytest.mark.parametrize("name", sorted(MODELS))
@PROPERTIES
@given(data=st.data(), rng=st.randoms(use_true_random=False))
def test_the_fingerprint_of_a_valid_request_ignores_key_order(
    name: str, data: Any, rng: random.Random
) -> None:
    """A valid request validates, and its fingerprint is the same whatever the order of its keys."""
    value = data.draw(VALID[name])
    model = MODELS[name]
    shuffled = reordered(value, rng)
    assert _digest(model, shuffled) == _digest(model, value)
    assert _digest(model, json.loads(json.dumps(shuffled))) == _digest(model, value)


@PROPERTIES
@given(value=VALID["checkout"], rng=st.randoms(use_true_random=False))
def test_a_checkout_fingerprint_ignores_price_spelling_and_the_default_currency(
    value: dict[str, Any], rng: random.Random
) -> None:
    """19.99 and "19.99", "5" and "5.00", an omitted currency and "USD": one meaning, one fingerprint."""
    respelled = reordered(value, rng)
    for line in respelled["items"]:
        cents = round(float(line["unit_price"]) * 100)
        line["unit_price"] = rng.choice(
            [cents / 100, f"{cents / 100:.2f}", f"{cents // 100}.{cents % 100:02d}"]
        )
    if "currency" not in respelled:
        respelled["currency"] = "USD"
    elif respelled["currency"] == "USD":
        del respelled["currency"]
    assert _digest(CheckoutCreate, respelled) == _digest(CheckoutCreate, value)
