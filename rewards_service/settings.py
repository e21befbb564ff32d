"""Settings of the rewards service, read from its own environment."""

from servicekit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Environment variables of the rewards process."""

    database_url: str = "sqlite:///data/rewards.db"
    port: int = 8003
