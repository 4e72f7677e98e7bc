"""`make demo`: the campaign story played through the gateway of a running suite (`make run`).

Every user action goes through miandan.gateway.v1.GatewayService with the generated stubs and a
bearer token minted with the suite's JWT settings; only the operator steps of the lottery
(CommitDraw, RunDraw) go to the lottery service directly, with the admin credential.
User ids carry a timestamp suffix, so the demo can be re-run against the same data.

    python -m scripts.demo [--gateway 127.0.0.1:50050] [--lottery 127.0.0.1:50054]
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from datetime import datetime, timezone

import grpc

from miandan.catalog.v1 import catalog_service_pb2
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2, lottery_service_pb2_grpc
from miandan.order.v1 import order_pb2
from services.common.auth import internal_metadata, open_channel
from services.common.config import Settings
from services.common.errors import error_details

from gateway.token import mint
from gateway.wiring import campaign_id_from_env

HANGZHOU = common_pb2.GeoPoint(latitude=30.2775, longitude=120.1640)  # 西湖文化广场
ORDER_TEXT = "两杯生椰拿铁，一杯少冰"
CANCEL_TEXT = "一杯冰鲜柠檬水"


def yuan(fen: int) -> str:
    return f"¥{fen / 100:.2f}"


def say(text: str = "") -> None:
    print(text, flush=True)


def title(text: str) -> None:
    say()
    say(f"━━ {text} " + "━" * max(0, 60 - len(text) * 2))


def rid() -> str:
    return uuid.uuid4().hex


class Demo:
    def __init__(self, settings: Settings, gateway_addr: str, lottery_addr: str) -> None:
        self.settings = settings
        self.suffix = datetime.now().strftime("%m%d%H%M%S")
        self.channel = grpc.aio.insecure_channel(gateway_addr)
        self.gw = gateway_service_pb2_grpc.GatewayServiceStub(self.channel)
        self.lottery_addr = lottery_addr
        self.lottery_channel = open_channel(settings, lottery_addr)
        self.lottery = lottery_service_pb2_grpc.LotteryServiceStub(self.lottery_channel)
        self.admin = internal_metadata(settings, admin=True)
        self.campaign_id = campaign_id_from_env(settings)

    def user(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    def auth(self, user: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {mint(self.settings, user)}"),)

    async def close(self) -> None:
        await self.channel.close()
        await self.lottery_channel.close()

    async def join(self, user: str, phrase: str = "") -> gw.JoinResponse:
        return await self.gw.Join(gw.JoinRequest(request_id=rid(), pass_phrase_text=phrase), metadata=self.auth(user), timeout=10)

    async def wallet(self, user: str) -> gw.GetWalletResponse:
        return await self.gw.GetWallet(gw.GetWalletRequest(), metadata=self.auth(user), timeout=10)

    # --- 1. the family ------------------------------------------------------------------------

    async def family(self) -> None:
        title("1. 一家六口，一条口令链 / a family of six joins through one pass-phrase chain")
        names = ["爷爷 grandpa", "奶奶 grandma", "爸爸 dad", "妈妈 mum", "姐姐 sister", "弟弟 brother"]
        ids = [self.user(f"family{i + 1}") for i in range(len(names))]
        phrase = ""
        for name, user in zip(names, ids):
            joined = await self.join(user, phrase)
            w = joined.wallet.wallet
            via = "直接注册 signed up" if not phrase else (
                "凭口令加入 joined with the pass-phrase" if joined.invite_accepted else f"口令未生效 invite problem: {joined.invite_problem}"
            )
            say(f"  {name:<14} {via}; 分享口令 shares: {w.pass_phrase_text}")
            phrase = f"快来领免单卡！{w.pass_phrase_text}"
        total_cards, total_fen = 0, 0
        say()
        for name, user in zip(names, ids):
            w = (await self.wallet(user)).wallet
            total_cards += w.wallet.cards_granted
            total_fen += w.wallet.spendable_fen
            say(f"  {name:<14} {w.wallet.cards_granted:2d} 张卡 cards, 可用 spendable {yuan(w.wallet.spendable_fen)}, 邀请 invited {w.wallet.invites_made}")
        say(f"  全家合计 family total: {total_cards} 张免单卡 cards = {yuan(total_fen)}")
        say("  (规则 rules: 注册 1 张 sign-up + 每次邀请双方各 1 张 both sides of every invite. The story's")
        say("   '6 people, 11 cards' counted 6 sign-up + 5 inviter cards; these rules also give each of the")
        say("   5 invitees a card, so the same chain yields 16 here.)")

    # --- 2. order by text --------------------------------------------------------------------

    async def order_by_text(self) -> None:
        title(f"2. 一句话点单 / one sentence: “{ORDER_TEXT}” near 杭州西湖文化广场")
        # Two lattes cost more than one card (one card per order): the rest is paid in the
        # sandbox. Step 3 shows an order the card covers completely.
        user = self.user("xiaoming")
        await self.join(user)
        md = self.auth(user)
        reply = await self.gw.OrderByText(gw.OrderByTextRequest(text=ORDER_TEXT, location=HANGZHOU), metadata=md, timeout=10)
        p = reply.preview
        if not p.preview_id:
            say(f"  需要澄清 clarification: {p.clarification}")
            say("  (the demo stores keep opening hours; outside them nothing can be ordered)")
            return
        store = p.proposal.store
        say(f"  理解为 understood: {p.proposal.explanation or p.text}")
        say(f"  门店 store: {store.store.name} ({store.distance_meters:.0f} m)")
        for line in p.proposal.quote.lines:
            opts = "/".join(o.name for o in line.options)
            say(f"    {line.quantity} × {line.item_name} [{opts}]  {yuan(line.line_total_fen)}")
        say(f"  合计 total {yuan(p.total_fen)}; 免单卡抵扣 card covers {yuan(p.card_covered_fen)}; 还需支付 to pay {yuan(p.payable_fen)}")
        placed = await self.gw.OrderByText(
            gw.OrderByTextRequest(request_id=rid(), preview_id=p.preview_id, confirm=True), metadata=md, timeout=10
        )
        order = placed.order
        say(f"  确认预览 confirmed preview {p.preview_id[:10]}…: order {order.order_id}, status {order_pb2.OrderStatus.Name(order.status)}")
        if order.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT:
            paid = await self.gw.ConfirmPayment(
                gw.ConfirmPaymentRequest(request_id=rid(), order_id=order.order_id, payment_reference=order.payment.payment_reference),
                metadata=md, timeout=10,
            )
            say(f"  一张卡只抵 {yuan(order.card_discount_fen)} (one card per order); paid {yuan(order.payable_fen)} "
                f"in the sandbox -> {order_pb2.OrderStatus.Name(paid.order.status)}")
        else:
            say(f"  分文未付 paid nothing: the card covered {yuan(order.card_discount_fen)}")

    # --- 3. cancel ---------------------------------------------------------------------------

    async def cancel(self) -> None:
        title(f"3. 下单后取消，卡退回 / order “{CANCEL_TEXT}”, pay nothing, cancel, get the card back")
        user = self.user("xiaohong")
        await self.join(user)
        md = self.auth(user)
        before = (await self.wallet(user)).wallet.wallet.spendable_fen
        reply = await self.gw.OrderByText(
            gw.OrderByTextRequest(request_id=rid(), text=CANCEL_TEXT, location=HANGZHOU, confirm=True), metadata=md, timeout=10
        )
        order = reply.order
        say(f"  order {order.order_id}: {yuan(order.subtotal_fen)}, card {yuan(order.card_discount_fen)}, "
            f"to pay {yuan(order.payable_fen)} -> {order_pb2.OrderStatus.Name(order.status)}")
        during = (await self.wallet(user)).wallet.wallet.spendable_fen
        cancelled = await self.gw.CancelOrder(
            gw.CancelOrderRequest(request_id=rid(), order_id=order.order_id, reason="点错了 ordered by mistake"), metadata=md, timeout=10
        )
        after = (await self.wallet(user)).wallet.wallet.spendable_fen
        say(f"  cancelled: {order_pb2.OrderStatus.Name(cancelled.order.status)}, card returned: {cancelled.order.card_returned}")
        say(f"  可用额度 spendable: before {yuan(before)} -> after ordering {yuan(during)} -> after cancelling {yuan(after)}")

    # --- 4. lottery ---------------------------------------------------------------------------

    async def lottery_day(self) -> None:
        title("4. 邀请三位新用户，参加今日抽奖 / invite three new users, enter today's draw")
        host = self.user("laowang")
        phrase = (await self.join(host)).wallet.wallet.pass_phrase_text
        for i in range(3):
            friend = self.user(f"friend{i + 1}")
            joined = await self.join(friend, f"{phrase} 帮我点一下")
            say(f"  {friend} joined with 老王's pass-phrase: accepted={joined.invite_accepted}")
        lottery = (await self.wallet(host)).wallet.lottery
        say(f"  老王 lottery progress {lottery.invites}/{lottery.threshold}, qualified={lottery.qualified}")
        md = self.auth(host)
        day = ""
        try:
            entered = await self.gw.EnterLottery(gw.EnterLotteryRequest(request_id=rid()), metadata=md, timeout=10)
            draw = entered.draw
            day = draw.day
            say(f"  老王 entered {draw.day}'s draw ({draw.entrant_count} entrants so far, {draw.winner_count} winners, "
                f"prize {draw.prize_name} {yuan(draw.prize_value_fen)})")
        except grpc.aio.AioRpcError as err:
            d = error_details(err)
            say(f"  EnterLottery -> {err.code().name} {d['reason']}: {d['message']}")
            if d["reason"] != "ENTRIES_CLOSED":
                return
            say("  (today's entries closed at the cut-off; the operator steps below still run today's draw)")
        results = (await self.gw.GetDrawResults(gw.GetDrawResultsRequest(day=day), metadata=md, timeout=10)).results
        draw = results.draw
        day = draw.day
        say(f"  承诺 commitment published before the cut-off: sha256(seed) = {draw.commitment[:24]}…")
        # Operator: commit (idempotent, never replaces a seed) and run once the cut-off passed.
        try:
            await self.lottery.CommitDraw(
                lottery_service_pb2.CommitDrawRequest(request_id=rid(), campaign_id=self.campaign_id, day=day),
                metadata=self.admin, timeout=10,
            )
            say("  CommitDraw (admin): commitment in place")
        except grpc.aio.AioRpcError as err:
            say(f"  CommitDraw (admin) -> {error_details(err)['reason']} (the scheduler committed it at the start of the day)")
        cutoff = draw.cutoff_time.ToDatetime(tzinfo=timezone.utc)
        wait = (cutoff - datetime.now(timezone.utc)).total_seconds()
        if wait > 120:
            say(f"  entries close at {cutoff.astimezone().isoformat(timespec='minutes')}; the draw never runs before the cut-off.")
            say("  To see a whole day in one run, start the suite with MIANDAN_LOTTERY_CUTOFF a minute or two ahead")
            say("  (campaign-local HH:MM) and run the demo again. Showing the latest drawn day instead:")
            await self.show_latest(host)
            return
        if wait > 0:
            say(f"  waiting {wait:.0f} s for the cut-off …")
            await asyncio.sleep(wait + 1)
        try:
            run = await self.lottery.RunDraw(
                lottery_service_pb2.RunDrawRequest(request_id=rid(), campaign_id=self.campaign_id, day=day),
                metadata=self.admin, timeout=30,
            )
            say(f"  RunDraw (admin): seed revealed {run.draw.seed[:24]}…, {len(run.draw.winners)} winner(s)")
        except grpc.aio.AioRpcError as err:
            d = error_details(err)
            say(f"  RunDraw (admin) -> {err.code().name} {d['reason']}: {d['message']}")
        await self.show_results(host, day)

    async def show_latest(self, user: str) -> None:
        draws = await self.lottery.ListDraws(
            lottery_service_pb2.ListDrawsRequest(campaign_id=self.campaign_id, page_size=10), metadata=self.admin, timeout=10
        )
        drawn = [d for d in draws.draws if d.status == lottery_pb2.DRAW_STATUS_DRAWN]
        if not drawn:
            say("  no day has been drawn yet in this suite.")
            return
        await self.show_results(user, drawn[0].day)

    async def show_results(self, user: str, day: str) -> None:
        res = (await self.gw.GetDrawResults(gw.GetDrawResultsRequest(day=day), metadata=self.auth(user), timeout=30)).results
        d = res.draw
        say(f"  {d.day}: {lottery_pb2.DrawStatus.Name(d.status)}, {d.entrant_count} entrants, winners {list(d.winners)[:5]}"
            f"{' …' if len(d.winners) > 5 else ''}")
        say(f"  独立验证 independent check by the gateway: verified={res.verified} — {res.verification_note}")
        if d.status == lottery_pb2.DRAW_STATUS_DRAWN:
            say(f"  {'🎉 ' if res.caller_won else ''}you {'won' if res.caller_won else 'did not win'} "
                f"(anyone can re-check: python -m services.lottery.verify --target {self.lottery_addr} "
                f"--campaign {self.campaign_id} --day {d.day})")

    async def browse(self) -> None:
        title("5. 附近门店 / stores near 西湖文化广场 (SHEDDABLE under load)")
        user = self.user("xiaoming")
        reply = await self.gw.SearchStores(
            gw.SearchStoresRequest(search=catalog_service_pb2.SearchStoresRequest(location=HANGZHOU, radius_meters=1500, page_size=5)),
            metadata=self.auth(user), timeout=10,
        )
        for hit in reply.stores:
            say(f"  {hit.distance_meters:6.0f} m  {hit.store.name}  {'营业中 open' if hit.open_now else '休息中 closed'}")


async def main_async(args: argparse.Namespace) -> int:
    settings = Settings.from_env("gateway")
    demo = Demo(settings, args.gateway or settings.gateway_addr, args.lottery or settings.lottery_addr)
    say(f"miandan demo — campaign {demo.campaign_id}, gateway {args.gateway or settings.gateway_addr}, users *-{demo.suffix}")
    start = time.perf_counter()
    try:
        for step in (demo.family, demo.order_by_text, demo.cancel, demo.lottery_day, demo.browse):
            try:
                await step()
            except grpc.aio.AioRpcError as err:
                d = error_details(err)
                say(f"  ✗ {err.code().name} {d['reason'] or ''}: {d['message']}")
                if err.code() == grpc.StatusCode.UNAVAILABLE and d["reason"] != "OVERLOADED":
                    say("  is the suite running? start it with `make run` in another terminal")
                    return 1
    finally:
        await demo.close()
    say()
    say(f"demo finished in {time.perf_counter() - start:.1f} s")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--gateway", help="gateway address (default MIANDAN_GATEWAY_ADDR or 127.0.0.1:50050)")
    parser.add_argument("--lottery", help="lottery address for the operator steps (default MIANDAN_LOTTERY_ADDR)")
    sys.exit(asyncio.run(main_async(parser.parse_args())))


if __name__ == "__main__":
    main()
