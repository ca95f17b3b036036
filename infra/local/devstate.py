"""What a running ``polos dev`` records for the other ``polos`` commands: its API URL and the AWS environment
of its embedded moto server (endpoint, fake credentials, table and queue names), so that ``polos keys --dev``
manages the keys that server checks.

One file, ``polos-dev.json`` in the temporary directory (beside the functions' log, ``polos-dev.log``): the
``polos dev`` started last wins, and its ``stop`` removes the file only while it still records that server.
No secret goes in it (moto takes any credentials; the API key is not recorded).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

STATE_FILE_NAME = "polos-dev.json"


class NoDevServer(Exception):
    """No running ``polos dev`` is recorded (or the file cannot be read); the message says what to do."""


def state_path() -> Path:
    """``$TMPDIR/polos-dev.json`` (the platform's temporary directory)."""
    return Path(tempfile.gettempdir()) / STATE_FILE_NAME


@dataclass(frozen=True)
class DevState:
    """One running ``polos dev``: its process, its API URL and the environment boto3 needs to reach its
    tables (``None`` = unset the variable, e.g. a profile that would point boto3 elsewhere)."""

    pid: int
    api_url: str
    aws_endpoint_url: str
    environment: dict[str, str | None]

    def write(self, path: Path) -> None:
        """Replace ``path`` atomically (readers never see half a file), readable by this user only."""
        temporary = path.with_name(f".{path.name}.{self.pid}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(
                {
                    "pid": self.pid,
                    "api_url": self.api_url,
                    "aws_endpoint_url": self.aws_endpoint_url,
                    "environment": self.environment,
                },
                out,
                indent=2,
            )
        os.replace(temporary, path)

    def remove(self, path: Path) -> None:
        """Delete ``path`` if it still records this server (a later ``polos dev`` may have replaced it)."""
        try:
            if read(path) == self:
                path.unlink()
        except (NoDevServer, FileNotFoundError):
            pass


def read(path: Path) -> DevState:
    """The ``polos dev`` recorded in ``path``; :class:`NoDevServer` when there is none."""
    try:
        raw = json.loads(path.read_text())
        environment = raw["environment"]
        if not isinstance(environment, dict):
            raise TypeError("environment is not an object")
        return DevState(
            pid=int(raw["pid"]),
            api_url=str(raw["api_url"]),
            aws_endpoint_url=str(raw["aws_endpoint_url"]),
            environment={str(k): None if v is None else str(v) for k, v in environment.items()},
        )
    except FileNotFoundError:
        raise NoDevServer(f"no polos dev is running (it records itself in {path} when it starts)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NoDevServer(f"cannot read {path} (written by polos dev): {exc}") from None
