"""Demo endpoints that `statewright dev` serves under /demo, so that the sample workflows in
definitions/ call real HTTP services with nothing else running: a payment service, a
warehouse, and an approval inbox that calls back (the waitForTaskToken pattern)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse

log = logging.getLogger("statewright.demo")
JSON = Any
router = APIRouter(prefix="/demo", include_in_schema=False)
_pending: set[asyncio.Task[None]] = set()


@router.post("/payments/charges")
async def charge(body: Annotated[dict[str, JSON], Body()]) -> JSONResponse:
    """Charges up to 1,000; more is declined with 402."""
    amount = body.get("amount")
    if not isinstance(amount, int | float) or amount <= 0:
        return JSONResponse({"message": "amount must be a positive number"}, status_code=400)
    if amount > 1000:
        return JSONResponse({"message": "card declined: over the limit"}, status_code=402)
    charge_id = "ch_" + secrets.token_hex(6)
    return JSONResponse({"id": charge_id, "amount": amount, "status": "captured"})


@router.post("/payments/refunds")
async def refund(body: Annotated[dict[str, JSON], Body()]) -> JSONResponse:
    return JSONResponse({"id": "re_" + secrets.token_hex(6), "charge": body.get("chargeId")})


@router.post("/warehouse/shipments")
async def ship(body: Annotated[dict[str, JSON], Body()]) -> JSONResponse:
    """Ships a SKU; the SKU "OUT-OF-STOCK" cannot be shipped (409)."""
    sku = body.get("sku")
    if sku == "OUT-OF-STOCK":
        return JSONResponse({"message": f"{sku} is not in stock"}, status_code=409)
    return JSONResponse({"shipmentId": "sh_" + secrets.token_hex(6), "sku": sku})


@router.post("/approvals")
async def ask_for_approval(
    request: Request, body: Annotated[dict[str, JSON], Body()]
) -> JSONResponse:
    """Takes an approval request with a task token; logs the URLs that approve or reject it
    and, when ``autoApproveAfterSeconds`` is given, approves it itself after that long."""
    token = body.get("token")
    if not isinstance(token, str) or not token:
        return JSONResponse({"message": "token (the task token) is required"}, status_code=400)
    base = str(request.base_url).rstrip("/")
    approve = f"{base}/api/v1/callbacks/{token}/success"
    reject = f"{base}/api/v1/callbacks/{token}/failure"
    log.warning(
        "approval requested: %s\n  approve: curl -X POST %s -H 'content-type: application/json' "
        "-d '{\"approved\": true}'\n  reject:  curl -X POST %s -H 'content-type: "
        'application/json\' -d \'{"error": "Rejected", "cause": "no"}\'',
        body.get("request"),
        approve,
        reject,
    )
    delay = body.get("autoApproveAfterSeconds")
    if isinstance(delay, int | float) and 0 <= delay <= 3600:

        async def later() -> None:
            await asyncio.sleep(delay)
            async with httpx.AsyncClient() as client:
                await client.post(approve, json={"approved": True, "by": "auto-approver"})

        task = asyncio.create_task(later())
        _pending.add(task)
        task.add_done_callback(_pending.discard)
    return JSONResponse({"approveUrl": approve, "rejectUrl": reject}, status_code=202)
