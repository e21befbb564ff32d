"""Settings of the warehouse service, read from its own environment."""

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment variables of the warehouse process."""

    database_url: str = "sqlite:///data/warehouse.db"
    port: int = 8002
    # `checkout-suite up` and compose turn this on so a newcomer can order at once.
    seed_demo_catalog: bool = False
