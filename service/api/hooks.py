"""The REST API of status webhooks, under /api/v1/webhooks (service/webhooks.py)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field

from service import webhooks
from service.api.rest import EngineDep, _authorized, _sealer

router = APIRouter(prefix="/api/v1/webhooks", dependencies=[Depends(_authorized)])


class WebhookCreate(BaseModel):
    """Subscribe a URL to execution status changes."""

    name: str = Field(min_length=1, max_length=64)
    url: str = Field(min_length=1, max_length=2048)
    # Signs every delivery (HMAC-SHA256); generated when not given and shown once.
    secret: str | None = Field(default=None, min_length=16, max_length=512)
    state_machine: str | None = Field(default=None, max_length=80)  # None: every state machine
    statuses: list[str] = Field(default_factory=list)  # empty: every status


class WebhookPublic(BaseModel):
    """A webhook, without its secret."""

    name: str
    url: str
    state_machine: str | None
    statuses: list[str]
    enabled: bool
    created_at: datetime


class WebhookCreated(WebhookPublic):
    """A new webhook and its secret: the only time the secret is shown."""

    secret: str


class DeliveryPublic(BaseModel):
    """One delivery of a webhook's log."""

    id: int
    execution_arn: str
    event_status: str  # the execution status the event reports
    status: str  # PENDING, RUNNING (being sent), DELIVERED or DEAD
    attempts: int
    created_at: datetime
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None


def _public(info: webhooks.WebhookInfo) -> WebhookPublic:
    return WebhookPublic(**{name: getattr(info, name) for name in WebhookPublic.model_fields})


@router.post("", status_code=201)
async def create_webhook(
    request: Request, engine: EngineDep, body: WebhookCreate
) -> WebhookCreated:
    """Create a webhook; the answer holds its secret, which is never shown again."""
    info, secret = await webhooks.create_webhook(
        engine,
        _sealer(request),
        body.name,
        body.url,
        secret=body.secret,
        state_machine=body.state_machine,
        statuses=body.statuses,
    )
    return WebhookCreated(**_public(info).model_dump(), secret=secret)


@router.get("")
async def list_webhooks(engine: EngineDep) -> list[WebhookPublic]:
    """Every webhook (without secrets)."""
    return [_public(info) for info in await webhooks.list_webhooks(engine)]


@router.get("/{name}")
async def describe_webhook(engine: EngineDep, name: str) -> WebhookPublic:
    """One webhook (without its secret)."""
    return _public(await webhooks.describe_webhook(engine, name))


@router.post("/{name}/pause")
async def pause_webhook(engine: EngineDep, name: str) -> WebhookPublic:
    """Stop writing deliveries for new status changes (those written still go out)."""
    return _public(await webhooks.set_enabled(engine, name, False))


@router.post("/{name}/resume")
async def resume_webhook(engine: EngineDep, name: str) -> WebhookPublic:
    """Write deliveries for status changes again."""
    return _public(await webhooks.set_enabled(engine, name, True))


@router.delete("/{name}", status_code=204)
async def delete_webhook(engine: EngineDep, name: str) -> None:
    """Delete a webhook and its delivery log."""
    await webhooks.delete_webhook(engine, name)


@router.get("/{name}/deliveries")
async def list_deliveries(
    engine: EngineDep,
    name: str,
    status: Annotated[str | None, Query(pattern="^(PENDING|RUNNING|DELIVERED|DEAD)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1)] = None,
) -> list[DeliveryPublic]:
    """The webhook's deliveries, newest first; ``before`` (an id) pages back."""
    found = await webhooks.list_deliveries(engine, name, status=status, limit=limit, before=before)
    return [DeliveryPublic(**dataclasses.asdict(item)) for item in found]


@router.post("/{name}/deliveries/{delivery_id}/redeliver", status_code=202)
async def redeliver(engine: EngineDep, name: str, delivery_id: int) -> dict[str, int]:
    """Send a delivery again (a dead-lettered one, say) as soon as a worker can."""
    await webhooks.redeliver(engine, name, delivery_id)
    return {"id": delivery_id}
