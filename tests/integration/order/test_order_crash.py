"""The order server killed with SIGKILL in the middle of 200 placements, then restarted."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import grpc

from miandan.card.v1 import card_pb2
from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2, order_service_pb2 as svc, order_service_pb2_grpc

ROOT = Path(__file__).resolve().parents[3]
CAMPAIGN_TWO, STORE, LATTE = "it-two", "it-store-1", "it-latte"
USERS, PER_USER = 40, 5  # 200 placements; each user has 2 cards, so 80 of them can use one


def start_order_process(stack, data_dir: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": f"{ROOT / 'protos'}{os.pathsep}{ROOT}",
        "MIANDAN_DATA": str(data_dir),
        "MIANDAN_ORDER_PORT": "0",
        "MIANDAN_ORDER_METRICS_PORT": "0",
        "MIANDAN_CARD_ADDR": stack.card_addr,
        "MIANDAN_CATALOG_ADDR": stack.catalog_addr,
        "MIANDAN_CAMPAIGN_ID": CAMPAIGN_TWO,
        "MIANDAN_LOG_CALLS": "0",
        "MIANDAN_LOG_LEVEL": "WARNING",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.order"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return proc


async def wait_port(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    loop = asyncio.get_running_loop()
    line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), timeout)
    match = re.search(r":(\d+)\s*$", line)
    assert match, f"order server did not start: {line!r}"
    return int(match.group(1))


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stdout:
        proc.stdout.close()


async def test_sigkill_in_the_middle_of_200_placements_loses_nothing_acknowledged(stack, tmp_path):
    users = [f"k{i:02d}" for i in range(USERS)]
    await asyncio.gather(*(stack.signup(u, CAMPAIGN_TWO) for u in users))
    data = tmp_path / "crash"
    proc = start_order_process(stack, data)
    try:
        port = await wait_port(proc)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        order = order_service_pb2_grpc.OrderServiceStub(channel)
        requests = [(u, f"{u}-{n}") for n in range(PER_USER) for u in users]
        acked: dict[str, order_pb2.Order] = {}
        queue = list(requests)

        async def worker() -> None:
            while queue:
                user, rid = queue.pop(0)
                req = svc.PlaceOrderRequest(
                    request_id=rid,
                    user_id=user,
                    store_id=STORE,
                    lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)],
                    campaign_id=CAMPAIGN_TWO,
                )
                try:
                    acked[rid] = (await order.PlaceOrder(req, metadata=stack.md, timeout=5)).order
                except grpc.aio.AioRpcError:
                    pass  # the server died under this call: not acknowledged

        async def killer() -> None:
            while len(acked) < 60:
                await asyncio.sleep(0.005)
            kill(proc)

        await asyncio.wait_for(asyncio.gather(killer(), *(worker() for _ in range(16))), 60)
        await channel.close()
        assert 60 <= len(acked) < len(requests), len(acked)
        with sqlite3.connect(data / "order.db") as db:
            left_placing = db.execute("SELECT COUNT(*) FROM orders WHERE status = 'PLACING'").fetchone()[0]
        print(f"acknowledged {len(acked)}, left PLACING by the kill: {left_placing}")

        proc = start_order_process(stack, data)
        port = await wait_port(proc)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        order = order_service_pb2_grpc.OrderServiceStub(channel)

        # Every acknowledged order is there, unchanged.
        for rid, seen in acked.items():
            got = (await order.GetOrder(svc.GetOrderRequest(order_id=seen.order_id, user_id=seen.user_id), metadata=stack.md)).order
            assert (got.status, got.card_id, got.payable_fen) == (seen.status, seen.card_id, seen.payable_fen), rid

        # The recovery pass on start leaves no card held for an order that never finished.
        deadline = time.monotonic() + 20
        while True:
            cards = await stack.campaign_cards(CAMPAIGN_TWO)
            if not any(c.state == card_pb2.CARD_STATE_RESERVED for c in cards):
                break
            assert time.monotonic() < deadline, [c for c in cards if c.state == card_pb2.CARD_STATE_RESERVED][:3]
            await asyncio.sleep(0.2)

        # A retry of every request after the crash returns the acknowledged order, or places it now.
        for user, rid in requests:
            req = svc.PlaceOrderRequest(
                request_id=rid,
                user_id=user,
                store_id=STORE,
                lines=[catalog_pb2.LineSelection(item_id=LATTE, quantity=1)],
                campaign_id=CAMPAIGN_TWO,
            )
            got = (await order.PlaceOrder(req, metadata=stack.md, timeout=5)).order
            if rid in acked:
                assert got.order_id == acked[rid].order_id and got.card_id == acked[rid].card_id

        # Every card is redeemed by exactly one live order, or available again.
        live, token = [], ""
        while True:
            page = await order.ListAllOrders(svc.ListAllOrdersRequest(page_token=token, page_size=1000), metadata=stack.admin_md)
            live.extend(page.orders)
            token = page.next_page_token
            if not token:
                break
        assert len(live) == len(requests)
        by_card: dict[str, list[str]] = {}
        for o in live:
            if o.card_id:
                by_card.setdefault(o.card_id, []).append(o.order_id)
        cards = await stack.campaign_cards(CAMPAIGN_TWO)
        for c in cards:
            if c.state == card_pb2.CARD_STATE_REDEEMED:
                assert by_card.get(c.card_id) == [c.order_id.split(".")[0]], c
            else:
                assert c.state == card_pb2.CARD_STATE_AVAILABLE and c.card_id not in by_card, c
        assert sum(1 for c in cards if c.state == card_pb2.CARD_STATE_REDEEMED) == USERS * 2
        # And nothing is RESERVED once the card service's reservation TTL has passed either.
        stack.clock.advance(901)
        assert not [c for c in await stack.campaign_cards(CAMPAIGN_TWO) if c.state == card_pb2.CARD_STATE_RESERVED]
        await channel.close()
    finally:
        kill(proc)
