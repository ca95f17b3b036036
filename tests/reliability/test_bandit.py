"""bandit is clean on shared/, functions/ and infra/; each exclusion in bandit.yaml holds for its reason."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "bandit.yaml"
BANDIT = Path(sys.executable).parent / "bandit"


def test_bandit_finds_nothing() -> None:
    done = subprocess.run(
        [str(BANDIT), "-c", str(CONFIG), "-r", "shared", "functions", "infra", "-f", "json", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    report = json.loads(done.stdout)
    findings = [
        f"{r['filename']}:{r['line_number']} {r['test_id']} {r['issue_text']}" for r in report["results"]
    ]
    assert report["errors"] == [], report["errors"]
    assert findings == [], "bandit findings:\n" + "\n".join(findings)
    assert report["metrics"]["_totals"]["loc"] > 1000  # it really scanned the code


def test_every_exclusion_has_a_reason() -> None:
    text = CONFIG.read_text()
    skipped = re.findall(r"^\s*-\s*(B\d{3})\s*$", text, flags=re.MULTILINE)
    assert skipped == ["B310", "B311"]
    for test_id in skipped:
        assert re.search(rf"^\s*# {test_id} \(.+\): .+", text, flags=re.MULTILINE), f"{test_id} has no reason"


def test_b310_reason_holds_client_refuses_other_schemes() -> None:
    from polos import PolosClient

    for url in ("file:///etc/passwd", "ftp://example.com", "localhost:3000"):
        with pytest.raises(ValueError, match="http:// or https://"):
            PolosClient(base_url=url, api_key="k")


def test_b311_reason_holds_api_keys_come_from_secrets() -> None:
    sources = [p for p in (ROOT / "shared" / "polos").rglob("*.py") if "key" in p.read_text().lower()]
    key_makers = [p for p in sources if re.search(r"def (create|new|generate)\w*key", p.read_text())]
    assert key_makers, "no API key generator found"
    for path in key_makers:
        text = path.read_text()
        assert "secrets" in text, f"{path.relative_to(ROOT)} makes API keys without the secrets module"
        assert not re.search(r"^\s*(import random|from random import)", text, flags=re.MULTILINE), path
