"""Value types for provider and connector configuration: secrets and config-relative paths.

Secrets are written inline, taken from an environment variable, or read from a file.

TOML syntax, one of::

    secret = "inline-value"
    secret = { env = "POSTURE_WEBHOOK_SECRET" }
    secret = { file = "/run/secrets/webhook" }

Whatever the source, the result is a `pydantic.SecretStr`, so the value never shows in a repr,
a log line or a validation error. A file's trailing newline is stripped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, SecretStr, ValidationInfo


def _resolve(value: Any, info: ValidationInfo) -> Any:
    if isinstance(value, SecretStr | str):
        return value
    if isinstance(value, dict):
        if set(value) == {"env"} and isinstance(value["env"], str):
            name = value["env"]
            if name not in os.environ:
                raise ValueError(f"environment variable {name!r} is not set")
            return SecretStr(os.environ[name])
        if set(value) == {"file"} and isinstance(value["file"], str):
            path = _relative_to_config(Path(value["file"]), info)
            try:
                return SecretStr(path.read_text(encoding="utf-8").rstrip("\r\n"))
            except OSError as exc:
                raise ValueError(f"cannot read secret file {str(path)!r}: {exc.strerror}") from None
            except UnicodeDecodeError:  # its message quotes a byte of the secret
                raise ValueError(f"secret file {str(path)!r} is not UTF-8 text") from None
    raise ValueError('expected a string, { env = "NAME" } or { file = "PATH" }')


Secret = Annotated[SecretStr, BeforeValidator(_resolve)]
"""A configuration secret; see the module docstring for the accepted forms."""


def _relative_to_config(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    if value.is_absolute() or base is None:
        return value
    return Path(base) / value


ConfigPath = Annotated[Path, AfterValidator(_relative_to_config)]
"""A file path in configuration; relative paths are taken from the config file's folder."""
