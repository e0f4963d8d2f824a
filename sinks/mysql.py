"""MySQL/MariaDB sink (configuration; the sink itself follows)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class MySQLSinkConfig(BaseModel):
    """`sink: {type: mysql}` — merged, idempotent apply with a fenced checkpoint table."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["mysql"]
    host: str = Field("127.0.0.1", description="target server host")
    port: int = Field(3306, ge=1, le=65535, description="target server port")
    user: str = Field(description="target user (needs write rights and CREATE for the checkpoint)")
    password: SecretStr = Field(SecretStr(""), description="password of `user`")
    ddl: Literal["apply", "skip", "fail"] = Field(
        "apply", description="what to do with DDL of replicated tables"
    )
    schema_map: dict[str, str] = Field(
        default_factory=dict, description="source schema -> target schema"
    )
    table_map: dict[str, str] = Field(
        default_factory=dict,
        description="'schema.table' -> 'schema.table' on the target (wins over schema_map)",
    )
    no_primary_key: Literal["match_row", "reject"] = Field(
        "match_row",
        description="tables without a primary key: match on the full row (with a warning) or fail",
    )
    checkpoint_schema: str = Field(
        "ferry", description="schema of the ferry_checkpoint table on the target"
    )
