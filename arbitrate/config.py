"""Configuration of the arbiter (Redis)."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class SentinelAddress(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str
    port: int = Field(26379, ge=1, le=65535)


class ArbiterConfig(BaseModel):
    """`arbiter:` — the Redis that holds the mainstem lock, epochs, positions and status."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"),
        description="redis:// or rediss:// URL (may carry a password; never logged)",
    )
    lock_ttl_ms: int = Field(
        5000, ge=500, le=600000, description="mainstem TTL; a dead node is replaced after it"
    )
    key_prefix: str = Field("ferry", description="Redis keys are <key_prefix>:<pipeline id>:...")
    sentinels: list[SentinelAddress] = Field(
        default_factory=list, description="Redis Sentinel addresses; with master_name"
    )
    master_name: str | None = Field(None, description="Sentinel master name")
    socket_timeout_ms: int = Field(2000, ge=100, description="Redis socket timeout")
    poll_ms: int = Field(
        500,
        ge=10,
        le=10000,
        description="upper bound of any blocking wait (standby, paused permit) between "
        "re-checks; wake-ups normally arrive sooner by pub/sub",
    )
    status_stale_ms: int = Field(
        15000, ge=100, description="a node report older than this is shown as stale by status"
    )
    status_ttl_ms: int = Field(
        600000, ge=1000, description="a node report not refreshed for this long disappears"
    )

    @field_validator("url")
    @classmethod
    def _url(cls, url: SecretStr) -> SecretStr:
        if not re.match(r"^(redis|rediss|unix)://", url.get_secret_value()):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return url

    @model_validator(mode="after")
    def _sentinel(self) -> ArbiterConfig:
        if bool(self.sentinels) != bool(self.master_name):
            raise ValueError("sentinels and master_name go together")
        return self

    def redacted_url(self) -> str:
        """The URL with any password replaced by ***."""
        return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", self.url.get_secret_value())
