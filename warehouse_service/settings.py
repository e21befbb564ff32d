"""Settings of the warehouse service, read from its own environment."""

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Environment variables of the warehouse process."""

    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = "sqlite:///data/warehouse.db"
    host: str = "127.0.0.1"
    # Bearer tokens the orchestrator must present (comma-separated to rotate); unset: open.
    service_token: SecretStr | None = None
    port: int = 8002
    # `checkout-suite up` and compose turn this on so a newcomer can order at once.
    seed_demo_catalog: bool = False
