"""The audit's fetcher and CLI over real gRPC: paging, credentials, proto -> facts, exit codes.

The card, order and lottery servers here are small in-memory servicers of the real contracts,
so the fetcher is proven independently of the services' stores (the e2e tests audit the real
suite)."""
from __future__ import annotations

import asyncio
import hashlib
import socket
import os
import sys
from pathlib import Path

import grpc
import pytest

from miandan.card.v1 import card_pb2, card_service_pb2 as cs, card_service_pb2_grpc
from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2 as ls, lottery_service_pb2_grpc
from miandan.order.v1 import order_pb2, order_service_pb2 as os_, order_service_pb2_grpc
from services.audit import run_audit
from services.audit.model import recompute_winners

ROOT = Path(__file__).resolve().parents[3]
CID = "spring-2026"
SEED = "ab" * 32
ADMIN = ("x-miandan-admin-token", "dev-admin-token")


def _require_admin(context) -> None:
    md = tuple(context.invocation_metadata())
    if ADMIN not in md or ("x-miandan-internal-token", "dev-internal-token") not in md:
        raise PermissionError("audit must present the internal and admin credentials")


def _page(items, size: int, token: str):
    start = int(token or 0)
    nxt = start + size
    return items[start:nxt], (str(nxt) if nxt < len(items) else "")


class World:
    def __init__(self) -> None:
        self.cards = [
            card_pb2.Card(card_id=f"c{i}", campaign_id=CID, user_id=f"u{i}", state=card_pb2.CARD_STATE_AVAILABLE,
                          source=card_pb2.CARD_SOURCE_SIGNUP, face_value_fen=2_500)
            for i in range(5)
        ]
        self.cards[0].state, self.cards[0].order_id = card_pb2.CARD_STATE_REDEEMED, "o0"
        self.orders = [
            order_pb2.Order(order_id="o0", user_id="u0", status=order_pb2.ORDER_STATUS_PAID, card_id="c0", card_discount_fen=2_500,
                            subtotal_fen=3_200, payable_fen=700, campaign_id=CID),
            order_pb2.Order(order_id="o1", user_id="u1", status=order_pb2.ORDER_STATUS_CANCELLED, campaign_id=CID),
            order_pb2.Order(order_id="o2", user_id="u2", status=order_pb2.ORDER_STATUS_COMPLETED, campaign_id=CID),
        ]
        entrants = sorted(["u1", "u2", "u3"])
        self.draw = lottery_pb2.Draw(
            campaign_id=CID, day="2026-02-01", status=lottery_pb2.DRAW_STATUS_DRAWN, winner_count=2,
            winners=recompute_winners(SEED, "", entrants, 2), commitment=hashlib.sha256(bytes.fromhex(SEED)).hexdigest(),
            seed=SEED, entrant_count=3,
        )
        self.entrants = entrants
        self.asked_invites: list[str] = []


class Card(card_service_pb2_grpc.CardServiceServicer):
    def __init__(self, world: World) -> None:
        self.w = world

    async def ListCampaigns(self, request, context):
        _require_admin(context)
        rules = card_pb2.CampaignRules(budget_fen=1_000_000, per_user_card_cap=21, signup_grant=1, inviter_grant=1, invitee_grant=1)
        return cs.ListCampaignsResponse(campaigns=[card_pb2.Campaign(campaign_id=CID, rules=rules)])

    async def GetBudget(self, request, context):
        issued = sum(c.face_value_fen for c in self.w.cards)
        redeemed = sum(c.face_value_fen for c in self.w.cards if c.state == card_pb2.CARD_STATE_REDEEMED)
        return cs.GetBudgetResponse(budget=card_pb2.Budget(campaign_id=CID, budget_fen=1_000_000, issued_fen=issued, redeemed_fen=redeemed,
                                                           remaining_fen=1_000_000 - issued, cards_issued=len(self.w.cards)))

    async def ListCampaignCards(self, request, context):
        _require_admin(context)
        page, nxt = _page(self.w.cards, 2, request.page_token)  # small pages: the fetcher must follow tokens
        return cs.ListCampaignCardsResponse(cards=page, next_page_token=nxt)

    async def GetInviteStats(self, request, context):
        self.w.asked_invites.append(request.user_id)
        return cs.GetInviteStatsResponse(invited_count=0)

    async def ListCampaignMembers(self, request, context):
        _require_admin(context)
        users = sorted({c.user_id for c in self.w.cards})
        members = [cs.CampaignMember(user_id=u, cards_granted=sum(1 for c in self.w.cards if c.user_id == u)) for u in users]
        page, nxt = _page(members, 2, request.page_token)
        return cs.ListCampaignMembersResponse(members=page, next_page_token=nxt)

    async def ListCampaignInvites(self, request, context):
        _require_admin(context)
        return cs.ListCampaignInvitesResponse()


class Order(order_service_pb2_grpc.OrderServiceServicer):
    def __init__(self, world: World) -> None:
        self.w = world

    async def ListAllOrders(self, request, context):
        _require_admin(context)
        page, nxt = _page(self.w.orders, 2, request.page_token)
        return os_.ListAllOrdersResponse(orders=page, next_page_token=nxt)


class Lottery(lottery_service_pb2_grpc.LotteryServiceServicer):
    def __init__(self, world: World) -> None:
        self.w = world

    async def ListDraws(self, request, context):
        return ls.ListDrawsResponse(draws=[self.w.draw])

    async def ListDrawEntries(self, request, context):
        _require_admin(context)
        d = self.w.draw
        entries = [
            lottery_pb2.Entry(campaign_id=CID, day=d.day, user_id=u, drawn=True, won=u in d.winners)
            for u in self.w.entrants if not request.won_only or u in d.winners
        ]
        page, nxt = _page(entries, 1, request.page_token)
        return ls.ListDrawEntriesResponse(entries=page, next_page_token=nxt)

    async def VerifyDraw(self, request, context):
        page, nxt = _page(self.w.entrants, 2, request.page_token)
        d = self.w.draw
        return ls.VerifyDrawResponse(
            draw=d, seed=d.seed, commitment=d.commitment, entrants=page, entrant_count=len(self.w.entrants),
            entrants_hash=hashlib.sha256("\n".join(self.w.entrants).encode()).hexdigest(),
            algorithm="miandan-draw-hmac-sha256", algorithm_version=1, winners=d.winners, next_page_token=nxt,
        )


@pytest.fixture
async def world():
    w = World()
    server = grpc.aio.server()
    card_service_pb2_grpc.add_CardServiceServicer_to_server(Card(w), server)
    order_service_pb2_grpc.add_OrderServiceServicer_to_server(Order(w), server)
    lottery_service_pb2_grpc.add_LotteryServiceServicer_to_server(Lottery(w), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    addr = f"127.0.0.1:{port}"
    w.addrs = {"card": addr, "order": addr, "lottery": addr}
    yield w
    await server.stop(0)


async def test_a_consistent_world_fetched_page_by_page_audits_clean(world):
    assert await run_audit(world.addrs) == []


async def test_members_and_invites_are_read_in_pages_and_only_the_drawn_days_entrants_one_by_one(world):
    """Per-user calls grow with the campaign (two per user took hours for millions): users come
    from the campaign-wide listings; only an entrant's GetInviteStats, the count its entry was
    let in on, is asked user by user."""
    world.cards += [
        card_pb2.Card(card_id=f"x{i}", campaign_id=CID, user_id=f"x{i}", state=card_pb2.CARD_STATE_AVAILABLE,
                      source=card_pb2.CARD_SOURCE_SIGNUP, face_value_fen=2_500)
        for i in range(20)
    ]
    assert await run_audit(world.addrs) == []
    assert sorted(world.asked_invites) == world.entrants


async def test_a_double_spent_card_is_reported_with_its_ids(world):
    world.orders.append(order_pb2.Order(order_id="o9", user_id="u0", status=order_pb2.ORDER_STATUS_PAID, card_id="c0", campaign_id=CID))
    findings = await run_audit(world.addrs)
    assert [(f.check, f.ids["card_id"]) for f in findings] == [("CARD_DOUBLE_SPENT", "c0")]


async def test_a_draw_whose_winners_do_not_verify_is_reported(world):
    world.draw.winners[:] = [u for u in world.entrants if u not in world.draw.winners][:1] + ["u1"]
    checks = {f.check for f in await run_audit(world.addrs)}
    assert "DRAW_DOES_NOT_VERIFY" in checks


async def _cli(addr: str, *extra: str) -> tuple[int, str]:
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "miandan", "audit", "--card", addr, "--order", addr, "--lottery", addr, "--confirm-after", "0.1", *extra,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    return proc.returncode, out.decode()


async def test_the_cli_exits_zero_when_all_holds_and_one_with_findings(world):
    code, out = await _cli(world.addrs["card"])
    assert code == 0, out
    assert "OK: every invariant holds" in out
    world.cards[1].state = card_pb2.CARD_STATE_REDEEMED
    world.cards[1].order_id = "o1"  # the order was cancelled, the card stayed spent
    code, out = await _cli(world.addrs["card"])
    assert code == 1, out
    assert "FINDING REDEEMED_CARD_ORDER_NOT_PAID" in out and "card_id=c1" in out and "order_id=o1" in out


@pytest.fixture
def nothing_listening():
    with socket.socket() as s:  # bound, never listening: every connection is refused
        s.bind(("127.0.0.1", 0))
        yield f"127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("down", ["card", "order", "lottery"])
async def test_a_service_that_does_not_answer_is_named_with_its_address_in_one_line_and_exit_2(world, nothing_listening, down):
    addrs = dict(world.addrs, **{down: nothing_listening})
    env = dict(os.environ, PYTHONPATH=f"{ROOT / 'protos'}{os.pathsep}{ROOT}")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "miandan", "audit", "--card", addrs["card"], "--order", addrs["order"], "--lottery", addrs["lottery"],
        "--wait", "0.5", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 2, (out, err)
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err.decode(), err.decode()
    assert f"{down} service at {nothing_listening}" in lines[0] and "UNAVAILABLE" in lines[0], lines[0]
