"""Run in the SDK venv (``tests/helpers/sdk_venv.py``): calls the official ``polos-sdk`` client, unchanged.

Usage: ``python official_client.py URL API_KEY COMMAND...`` where a command is ``resume WORKFLOW RUN KEY
DATA_JSON`` or ``cancel RUN``; prints one JSON list, each command's answer (``resume``: ``null``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from polos import PolosClient  # the official client's package, not this project's


async def main(url: str, api_key: str, words: list[str]) -> list[Any]:
    client = PolosClient(api_url=url, api_key=api_key, project_id="polos-serverless-e2e")
    answers: list[Any] = []
    while words:
        command, *words = words
        if command == "resume":
            (workflow_id, run_id, key, data), words = words[:4], words[4:]
            answers.append(await client.resume(workflow_id, run_id, key, json.loads(data)))
        elif command == "cancel":
            (run_id,), words = words[:1], words[1:]
            answers.append(await client.cancel_execution(run_id))
        else:
            raise SystemExit(f"unknown command {command!r}")
    return answers


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))))
