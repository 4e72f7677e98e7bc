"""A backup taken while orders are placed (`python -m miandan backup`, the stores copied one after
another) restores, as the README says, into a suite the audit finds clean once the services'
own recovery has run: no order is PAID in the copy while its card is spendable again.

The real card, catalog, order and lottery servers (wiring.build, port 0) on one data directory;
the copy of each store is followed by a pause while the orders go on, so every gap between two
stores' copies is wide enough to hold orders."""
from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time

import services.backup as backup
from miandan.card.v1 import card_service_pb2 as cs, card_service_pb2_grpc
from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2, order_service_pb2 as os_, order_service_pb2_grpc
from services.audit import run_audit
from services.common.auth import internal_metadata, open_channel
from services.common.config import Settings
from tests.integration.in_process_suite import seed_campaign_and_store, start_suite

CID = "backup-it"


async def _start_suite(data, servers: list) -> Settings:
    return await start_suite(data, CID, servers)


async def _stop(servers: list) -> None:
    for server in reversed(servers):
        await server.stop(1.0)
    servers.clear()


async def _seed(settings: Settings) -> None:
    await seed_campaign_and_store(settings, CID, "bk", "备份", budget_fen=10**9)


async def _orders_until(settings: Settings, stop: asyncio.Event, worker: int) -> int:
    """Sign-up then one order paid in full by the card (reserve and redeem in one step), per user."""
    md = internal_metadata(settings)
    placed = 0
    async with open_channel(settings, settings.card_addr) as card_ch, open_channel(settings, settings.order_addr) as order_ch:
        cards = card_service_pb2_grpc.CardServiceStub(card_ch)
        orders = order_service_pb2_grpc.OrderServiceStub(order_ch)
        while not stop.is_set():
            user = f"w{worker}-{placed}"
            await cards.ClaimSignupCard(cs.ClaimSignupCardRequest(request_id=f"s-{user}", campaign_id=CID, user_id=user), metadata=md, timeout=10)
            reply = await orders.PlaceOrder(
                os_.PlaceOrderRequest(request_id=f"o-{user}", user_id=user, store_id="bk-store", campaign_id=CID,
                                      lines=[catalog_pb2.LineSelection(item_id="bk-latte", quantity=1)], card_use=order_pb2.CARD_USE_BEST),
                metadata=md, timeout=10,
            )
            assert reply.order.status == order_pb2.ORDER_STATUS_PAID and reply.order.card_id
            placed += 1
    return placed


async def _audit_settles(settings: Settings, within: float) -> list:
    """The audit's findings once they are gone, or as they stand after `within` seconds (the
    restored order service undoes what it finds at its first recovery pass)."""
    deadline = time.monotonic() + within
    while True:
        findings = await run_audit(settings, CID)
        if not findings or time.monotonic() > deadline:
            return findings
        await asyncio.sleep(0.5)


async def test_a_backup_taken_while_orders_are_placed_restores_to_a_suite_the_audit_finds_clean(tmp_path, monkeypatch):
    copy_one = backup.back_up_store

    def copy_then_pause(source, target):
        done = copy_one(source, target)
        time.sleep(0.3)  # the orders go on before the next store is copied
        return done

    monkeypatch.setattr(backup, "back_up_store", copy_then_pause)
    live, restored, dest = tmp_path / "live", tmp_path / "restored", tmp_path / "backup"
    servers: list = []
    try:
        settings = await _start_suite(live, servers)
        await _seed(settings)
        stop = asyncio.Event()
        workers = [asyncio.ensure_future(_orders_until(settings, stop, w)) for w in range(4)]
        await asyncio.sleep(0.3)
        copies = await asyncio.to_thread(backup.back_up, live, dest)
        stop.set()
        assert sum(await asyncio.gather(*workers)) > 0
        assert [c.integrity for c in copies] == ["ok"] * len(copies)
    finally:
        await _stop(servers)

    # The copies do hold a gap: cards redeemed for orders the copied order store does not have.
    with sqlite3.connect(dest / "order.db") as db:
        copied_orders = {r[0] for r in db.execute("SELECT order_id FROM orders")}
    with sqlite3.connect(dest / "card.db") as db:
        redeemed_for = {r[0].split(".")[0] for r in db.execute("SELECT order_id FROM cards WHERE state = 3")}
    assert redeemed_for - copied_orders

    # Restore as the README says: the files into a fresh data directory (no -wal / -shm beside
    # them), with the lottery's seed key kept apart, then start.
    restored.mkdir()
    for copy in copies:
        shutil.copy2(copy.path, restored / copy.path.name)
    shutil.copy2(live / "lottery-seed.key", restored / "lottery-seed.key")
    try:
        settings = await _start_suite(restored, servers)
        findings = await _audit_settles(settings, within=8.0)
    finally:
        await _stop(servers)
    assert findings == [], "\n".join(map(str, findings[:10]))
