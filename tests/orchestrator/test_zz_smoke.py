import pytest
from tests.suite import Suite, checkout_body

@pytest.mark.anyio
async def test_smoke(suite: Suite) -> None:
    r = await suite.orchestrator.post("/checkouts", json=checkout_body())
    print(r.status_code, r.text)
    assert r.status_code == 201
    r2 = await suite.orchestrator.post("/checkouts", json=checkout_body(items=[{"sku": "SKU-001", "quantity": 1, "unit_price": "1"}, {"sku": "SKU-SOLDOUT", "quantity": 1, "unit_price": "1"}]))
    print(r2.status_code, r2.text)
    print(await suite.inventory("SKU-001"), await suite.balance("c-42"), await suite.emails("ada@example.com"))
    print((await suite.orchestrator.get("/checkouts?limit=1")).text)
