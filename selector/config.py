"""Configuration of the MySQL/MariaDB source."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from pipeline.dialect import TlsConfig


class FilePosStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str = Field(min_length=1, description="binlog file name, e.g. mysql-bin.000003")
    pos: int = Field(ge=4, description="byte offset of an event start in that file")


class GtidStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gtid: str = Field(min_length=1, description="GTID set already executed: start after it")


StartSpec = Literal["latest", "earliest"] | FilePosStart | GtidStart
SnapshotMode = Literal["initial", "never", "when_needed", "initial_only"]

_GLOB = re.compile(r"^[^.\s]+\.[^.\s]+$")


class MySQLSourceConfig(BaseModel):
    """`source:` — the MySQL 5.7/8.x or MariaDB 10.5+ server whose binlog is read."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["mysql"] = "mysql"
    host: str = Field("127.0.0.1", description="source server host")
    port: int = Field(3306, ge=1, le=65535, description="source server port")
    user: str = Field(description="user with REPLICATION SLAVE, REPLICATION CLIENT and SELECT")
    password: SecretStr = Field(SecretStr(""), description="password of `user`")
    tls: TlsConfig = Field(
        default_factory=TlsConfig,  # type: ignore[arg-type]
        description="TLS of every connection to the source (control, binlog dump, snapshot),"
        " see source.tls",
    )
    server_id: int | None = Field(
        None,
        ge=1,
        le=4294967295,
        description="replica server id of the binlog dump: unique among the source's replicas"
        " and ferry pipelines. Default: derived from pipeline.id, between 1000000000 and"
        " 1999999999 (`ferry check` and `ferry status` show it)",
    )
    start: StartSpec = Field(
        "latest",
        description="where a pipeline with no committed position starts: latest | earliest"
        " | {file, pos} | {gtid}",
    )
    include: list[str] = Field(
        default_factory=lambda: ["*.*"], description="schema.table globs to replicate"
    )
    exclude: list[str] = Field(default_factory=list, description="schema.table globs to skip")
    heartbeat_ms: int = Field(
        1000,
        ge=100,
        le=60000,
        description="source heartbeat period (at most batch.max_wait_ms is used); bounds"
        " how long a read blocks when the binlog is idle",
    )
    connect_timeout_ms: int = Field(
        10000, ge=100, description="give up (resumable error) when a (re)connect takes longer"
    )
    decoder: Literal["process", "thread"] = Field(
        "process",
        description="decode the binlog in a child process (uses a second core; the default)"
        " or in a thread of the node (one process, slower)",
    )
    flavor: Literal["auto", "mysql", "mariadb"] = Field(
        "auto", description="server flavour; auto detects it from VERSION()"
    )
    snapshot: SnapshotMode | None = Field(
        None,
        description="copy the rows that exist before streaming (Debezium's words): initial"
        " (a new pipeline snapshots the included tables, then streams), never (stream from"
        " `start`), when_needed (also when the committed position was purged),"
        " initial_only (snapshot, then stop streaming). Default: initial, or never when"
        " `start` is set",
    )
    snapshot_chunk_rows: int = Field(
        10000, ge=1, description="rows per snapshot chunk (one query, held in memory at most)"
    )

    def dump_server_id(self, pipeline_id: str) -> int:
        """The server id this pipeline's binlog dump uses (``selector.identity``)."""
        from .identity import derived_server_id

        return self.server_id if self.server_id is not None else derived_server_id(pipeline_id)

    @property
    def snapshot_mode(self) -> SnapshotMode:
        """The snapshot mode in effect: an explicit ``start`` means "stream from there"."""
        if self.snapshot is not None:
            return self.snapshot
        return "never" if "start" in self.model_fields_set else "initial"

    @model_validator(mode="after")
    def _start_or_snapshot(self) -> MySQLSourceConfig:
        if "start" in self.model_fields_set and self.snapshot not in (None, "never"):
            raise ValueError(
                f"source.start and source.snapshot: {self.snapshot} do not go together: a"
                " snapshot streams from its own position; remove one of them"
            )
        return self

    @field_validator("include", "exclude")
    @classmethod
    def _globs(cls, globs: list[str]) -> list[str]:
        for glob in globs:
            if not _GLOB.match(glob):
                raise ValueError(f"{glob!r} is not a schema.table glob such as 'shop.*'")
        return globs
