"""Stand-ins for the side effects the documentation's examples call (email, storage, alerts)."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from pydantic import BaseModel

log = logging.getLogger("polos.examples")


class User(BaseModel):
    id: str
    email: str
    name: str


class CreateUserInput(BaseModel):
    email: str
    name: str


def send_welcome_email(user_id: str, email: str) -> dict[str, str]:
    log.info("welcome email to %s (%s)", email, user_id)
    return {"sent_to": email}


def create_sample_data(user_id: str) -> dict[str, Any]:
    log.info("sample data for %s", user_id)
    return {"user_id": user_id, "projects": 1}


def send_notification(notification: dict[str, Any]) -> bool:
    log.info("notification: %s", notification)
    return True


def send_alert(data: dict[str, Any]) -> bool:
    log.info("ALERT: %s", data)
    return True


def create_user_record(data: CreateUserInput) -> User:
    user_id = "user_" + hashlib.sha256(data.email.encode()).hexdigest()[:12]
    log.info("user record %s for %s", user_id, data.email)
    return User(id=user_id, email=data.email, name=data.name)


def insert_analytics(rows: list[dict[str, Any]]) -> int:
    log.info("inserted %d analytics rows", len(rows))
    return len(rows)


def send_order_confirmation(order_id: str) -> str:
    log.info("order confirmation for %s", order_id)
    return order_id


def update_analytics(order_ids: list[str]) -> int:
    log.info("analytics updated for %d orders", len(order_ids))
    return len(order_ids)
