"""The ``[providers.NAME]`` tables of the two file kinds."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from providers.config_types import ConfigPath


class _FileSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    matches_mac_provisioning_udid: ClassVar[bool] = True
    """The admin can write a Mac's provisioning UDID into a device's `udid`."""

    path: ConfigPath
    reload_interval: float = Field(default=2.0, ge=0, description="seconds; 0 disables reload")
    missing_grace: float = Field(
        default=300.0,
        ge=0,
        description="seconds the last good inventory keeps serving after the file vanished; "
        "0: not ready at once",
    )


class CsvSettings(_FileSettings):
    """``[providers.NAME]`` with ``kind = "csv"``."""

    kind: Literal["csv"]
    group_delimiter: str = Field(default=";", min_length=1, max_length=1)


class JsonSettings(_FileSettings):
    """``[providers.NAME]`` with ``kind = "json"``."""

    kind: Literal["json"]
