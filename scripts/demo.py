"""`make demo`: the campaign story played through the gateway, from joining to a verified draw.

Every user action goes through miandan.gateway.v1.GatewayService with the generated stubs and a
bearer token minted with the suite's JWT settings; only the operator steps of the lottery
(CommitDraw, RunDraw, VerifyDraw) go to the lottery service directly, with the admin credential,
and the store's steps (its queue of orders) to the order service (MIANDAN_ORDER_ADDR, which like
every address follows MIANDAN_ORDER_PORT when unset), with a merchant grant.
User ids carry a timestamp suffix, so the demo can be re-run against the same data.

Which suite:
- a suite already answering at the gateway address (MIANDAN_GATEWAY_ADDR / --gateway, default
  127.0.0.1:50050) is used as it is. Its lottery closes entries at its configured cut-off
  (20:00 Asia/Shanghai by default) and never draws before it, so the demo enters today's draw and
  shows the commitment, but runs and verifies the draw only when the cut-off has passed or is
  less than two minutes away (it waits then).
- otherwise, or with --own-suite, the demo starts its own suite exactly as `make run` does
  (`python -m services.suite`, a temporary MIANDAN_DATA, free ports) with the lottery cut-off at
  the first whole second at least --cutoff-in seconds ahead (MIANDAN_LOTTERY_CUTOFF, campaign-local
  HH:MM:SS; skipped with a note if that second is past local midnight), plays the story, waits for
  the cut-off, has the operator run the draw, verifies it twice independently (the gateway's
  check and the services.lottery.verify checker) and stops the suite, also on Ctrl-C.

    python -m scripts.demo [--own-suite] [--cutoff-in 45] [--gateway ADDR] [--lottery ADDR]

Exit status: 0 when every step the chosen suite allows ran as the story says; 1 otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, time as clock_time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import grpc
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc

from miandan.card.v1 import card_pb2
from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc
from miandan.common.v1 import common_pb2
from miandan.gateway.v1 import gateway_service_pb2 as gw, gateway_service_pb2_grpc
from miandan.lottery.v1 import lottery_pb2, lottery_service_pb2, lottery_service_pb2_grpc
from miandan.order.v1 import order_pb2, order_service_pb2, order_service_pb2_grpc
from services.common.auth import MERCHANT_TOKEN_KEY, internal_metadata, open_channel
from services.common.config import Settings
from services.common.errors import error_details
from services.common.local_ports import free_port
from services.common.merchant_grant import mint_grant
from services.lottery import verify as draw_checker

from gateway.token import mint
from gateway.wiring import campaign_id_from_env

ROOT = Path(__file__).resolve().parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")  # the campaign's time zone (the lottery's default)
HANGZHOU = common_pb2.GeoPoint(latitude=30.2775, longitude=120.1640)  # 西湖文化广场
ORDER_TEXT = "两杯生椰拿铁，一杯少冰"
CANCEL_TEXT = "一杯冰鲜柠檬水"
STORY_FAMILY_CARDS = 11  # "a family of six ... collects 11 cards" (PRODUCT.md)
SERVICES = ("card", "catalog", "order", "lottery", "gateway")
GATEWAY_SERVICE = "miandan.gateway.v1.GatewayService"

# A running suite's draw is awaited only when its cut-off is this close.
WAIT_FOR_RUNNING_SUITE_S = 120.0
# Own suite: time the story needs between "suite ready" and entering the draw (measured about
# 3-6 s on the loaded 2-core dev box, doubled). With less left, entries would close mid-story.
STORY_SECONDS = 15.0
SUITE_START_TIMEOUT_S = 120.0
SUITE_STOP_TIMEOUT_S = 45.0
COUNTDOWN_EVERY_S = 10.0
# After the cut-off: how long RunDraw may keep answering DRAW_NOT_CLOSED (clock skew between
# processes is milliseconds on one machine; this only bounds the loop).
RUN_DRAW_PATIENCE_S = 15.0


def yuan(fen: int) -> str:
    return f"¥{fen / 100:.2f}"


def say(text: str = "") -> None:
    """One line of the story. Output that went away (a closed terminal, `| head`) must not stop
    the demo before it stops its own suite: from then on it writes to /dev/null."""
    try:
        print(text, flush=True)
    except (OSError, ValueError):  # EPIPE, EIO; ValueError: the stream was closed
        sys.stdout = open(os.devnull, "w")


def title(text: str) -> None:
    say()
    say(f"━━ {text} " + "━" * max(0, 60 - len(text) * 2))


def rid() -> str:
    return uuid.uuid4().hex


def local_hm(moment: datetime) -> str:
    return moment.astimezone(SHANGHAI).strftime("%H:%M:%S")


# --- the own suite's cut-off -------------------------------------------------------------------


@dataclass(frozen=True)
class CutoffPlan:
    """When the own suite's lottery closes entries. `cutoff` is None when no same-day cut-off
    fits (the second would be on the next local day); `reason` then says why."""

    at: datetime  # the instant (aware); for a skipped plan, where it would have fallen
    cutoff: clock_time | None
    reason: str = ""

    @property
    def env_value(self) -> str:
        return self.cutoff.strftime("%H:%M:%S") if self.cutoff else ""


def plan_cutoff(now: datetime, lead_seconds: float, zone: ZoneInfo = SHANGHAI) -> CutoffPlan:
    """The first whole second (the setting is HH:MM:SS) at least `lead_seconds` after `now`, in
    campaign-local time: the lead alone is the wait, with no rounding up to a minute on top. A
    cut-off belongs to its local day: one that would land on the next day (00:00:00 included,
    which closes that day at its very start) cannot serve today's draw."""
    local = now.astimezone(zone)
    target = local + timedelta(seconds=lead_seconds)
    second = target.replace(microsecond=0)
    if second < target:
        second += timedelta(seconds=1)
    if second.date() != local.date():
        return CutoffPlan(
            second, None,
            f"现在是 {local:%H:%M} (Asia/Shanghai)，截止时间会跨过午夜 / it is {local:%H:%M} in Asia/Shanghai: a cut-off "
            f"{lead_seconds:.0f} s ahead would fall after local midnight, on the next day's draw",
        )
    return CutoffPlan(second, second.timetz().replace(tzinfo=None))


# --- the own suite ---------------------------------------------------------------------------


class OwnSuite:
    """`python -m services.suite` (what `make run` runs) on free loopback ports with a temporary
    data directory. Stopping is synchronous so it also works from a KeyboardInterrupt."""

    def __init__(self, plan: CutoffPlan) -> None:
        self.plan = plan
        self.data = Path(tempfile.mkdtemp(prefix="miandan-demo-"))
        self.out_path = self.data / "suite.out"
        env = dict(os.environ)
        env.update(
            PYTHONPATH=os.pathsep.join([str(ROOT / "protos"), str(ROOT)]),
            MIANDAN_DATA=str(self.data),
            MIANDAN_HOST="127.0.0.1",
            MIANDAN_LOG_CALLS="0",
            # The scheduler commits today's draw at start and runs it within a second of the
            # cut-off if the operator has not.
            MIANDAN_LOTTERY_TICK_SECONDS="1",
            PYTHONUNBUFFERED="1",
        )
        # A beacon-bound day waits for a beacon value nobody here can supply.
        env.pop("MIANDAN_LOTTERY_BEACON_SOURCE", None)
        if plan.cutoff is not None:
            env["MIANDAN_LOTTERY_CUTOFF"] = plan.env_value
        for name in SERVICES:
            port = free_port()
            env[f"MIANDAN_{name.upper()}_PORT"] = str(port)
            env[f"MIANDAN_{name.upper()}_METRICS_PORT"] = "off"
            # Every caller (services, seeding, this demo) follows the ports chosen here.
            env[f"MIANDAN_{name.upper()}_ADDR"] = f"127.0.0.1:{port}"

        self.env = env
        self.process: subprocess.Popen | None = None
        self.started = 0.0
        self.ready_after = 0.0

    def addr(self, name: str) -> str:
        return self.env[f"MIANDAN_{name.upper()}_ADDR"]

    def output(self) -> str:
        try:
            return self.out_path.read_text(errors="replace")
        except OSError:
            return ""

    async def start(self, timeout: float = SUITE_START_TIMEOUT_S) -> None:
        self.started = time.monotonic()
        with open(self.out_path, "wb") as out:
            # Own session: a Ctrl-C in the terminal reaches the demo only, which then stops the
            # suite in order (SIGTERM), as `make run` stops its children.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.suite"], cwd=ROOT, env=self.env,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while True:
            if "miandan suite ready" in self.output():
                self.ready_after = time.monotonic() - self.started
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"the suite exited with code {self.process.returncode}:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the suite was not ready within {timeout:.0f} s:\n{self.tail()}")
            await asyncio.sleep(0.2)

    def tail(self) -> str:
        text = self.output()[-2000:]
        for log in sorted((self.data / "logs").glob("*.log")):
            text += f"\n--- {log.name}\n" + log.read_text(errors="replace")[-1500:]
        return text

    def stop(self) -> int | None:
        """SIGTERM and a bounded wait; the suite stops its own children in order."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=SUITE_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
                say(f"  the suite did not stop within {SUITE_STOP_TIMEOUT_S:.0f} s; killed (logs kept in {self.data})")
                return self.process.returncode
        return self.process.returncode

    def remove_data(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)


async def answering(settings: Settings, addr: str, timeout: float = 2.0) -> bool:
    channel = open_channel(settings, addr)
    try:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=GATEWAY_SERVICE), timeout=timeout
        )
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.aio.AioRpcError:
        return False
    finally:
        await channel.close()


async def wait_until(moment: datetime, what: str) -> None:
    """Sleeps until `moment`, one countdown line every ~10 s. Callers bound `moment`."""
    while True:
        left = (moment - datetime.now(timezone.utc)).total_seconds()
        if left <= 0:
            return
        if left >= 1:
            say(f"  ⏳ {what}: 还有 {left:3.0f} 秒 / {left:.0f} s to go")
        await asyncio.sleep(min(COUNTDOWN_EVERY_S, left))


# --- the story -------------------------------------------------------------------------------


class Demo:
    def __init__(self, settings: Settings, gateway_addr: str, lottery_addr: str, *, own_suite: bool, draw_day_fits: bool = True) -> None:
        self.settings = settings
        self.own_suite = own_suite
        # False when the own suite could not get a cut-off before midnight (entries stay closed).
        self.draw_day_fits = draw_day_fits
        self.suffix = datetime.now().strftime("%m%d%H%M%S")
        self.gateway_addr = gateway_addr
        self.channel = open_channel(settings, gateway_addr)
        self.gw = gateway_service_pb2_grpc.GatewayServiceStub(self.channel)
        self.lottery_addr = lottery_addr
        self.lottery_channel = open_channel(settings, lottery_addr)
        self.lottery = lottery_service_pb2_grpc.LotteryServiceStub(self.lottery_channel)
        self.admin = internal_metadata(settings, admin=True)
        self.campaign_id = campaign_id_from_env(settings)
        self.problems: list[str] = []
        # What this suite cannot show right now, by design (said plainly, not a failure).
        self.limits: list[str] = []
        self.draw_day = ""
        self.draw_host = ""
        self.ordered: order_pb2.Order | None = None  # the sentence's order, for the merchant's part

    def user(self, name: str) -> str:
        return f"{name}-{self.suffix}"

    def auth(self, user: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {mint(self.settings, user)}"),)

    def problem(self, text: str) -> None:
        self.problems.append(text)
        say(f"  ✗ {text}")

    async def close(self) -> None:
        await self.channel.close()
        await self.lottery_channel.close()

    async def join(self, user: str, phrase: str = "") -> gw.JoinResponse:
        return await self.gw.Join(gw.JoinRequest(request_id=rid(), pass_phrase_text=phrase), metadata=self.auth(user), timeout=10)

    async def wallet(self, user: str) -> gw.GetWalletResponse:
        return await self.gw.GetWallet(gw.GetWalletRequest(), metadata=self.auth(user), timeout=10)

    # --- 0. own suite only: stores open at any hour -------------------------------------------

    async def night_stores(self) -> None:
        """The seeded demo stores keep real opening hours (瑞幸 closes at 22:00), so at night the
        story could not order. The own suite is throw-away, so the operator adds two stores open
        around the clock beside 西湖文化广场 through the catalog's admin API."""
        stores = [
            catalog_pb2.Store(store_id="demo-night-luckin", brand_id="luckin", name="瑞幸咖啡(西湖文化广场通宵店)",
                              address="杭州市下城区中山北路", city="杭州", location=HANGZHOU, time_zone="Asia/Shanghai"),
            catalog_pb2.Store(store_id="demo-night-mixue", brand_id="mixue", name="蜜雪冰城(西湖文化广场通宵店)",
                              address="杭州市下城区中山北路", city="杭州", location=HANGZHOU, time_zone="Asia/Shanghai"),
        ]
        async with open_channel(self.settings, self.settings.catalog_addr) as channel:
            catalog = catalog_service_pb2_grpc.CatalogServiceStub(channel)
            reply = await catalog.ImportStores(
                iter([catalog_service_pb2.ImportStoresRequest(stores=stores)]), metadata=self.admin, timeout=30
            )
        say(f"  (own suite: {reply.accepted} round-the-clock stores added at 西湖文化广场, so ordering works at any hour)")

    # --- 1. the family ------------------------------------------------------------------------

    async def family(self) -> None:
        title("1. 一家六口，一条口令链 / a family of six joins through one pass-phrase chain")
        names = ["爷爷 grandpa", "奶奶 grandma", "爸爸 dad", "妈妈 mum", "姐姐 sister", "弟弟 brother"]
        ids = [self.user(f"family{i + 1}") for i in range(len(names))]
        phrase = ""
        for name, user in zip(names, ids):
            joined = await self.join(user, phrase)
            w = joined.wallet.wallet
            if not phrase:
                via = "直接注册 signed up"
            elif joined.invite_accepted:
                via = "凭口令加入 joined with the pass-phrase"
            else:
                via = f"口令未生效 invite not accepted: {joined.invite_problem}"
                self.problem(f"{name}'s pass-phrase was not accepted ({joined.invite_problem})")
            say(f"  {name:<14} {via}; 分享口令 shares: {w.pass_phrase_text}")
            phrase = f"快来领免单卡！{w.pass_phrase_text}"
        total_cards, total_fen = 0, 0
        sources: Counter[str] = Counter()
        say()
        for name, user in zip(names, ids):
            view = (await self.wallet(user)).wallet
            w = view.wallet
            total_cards += w.cards_granted
            total_fen += w.spendable_fen
            mine = Counter(card_pb2.CardSource.Name(c.source).removeprefix("CARD_SOURCE_").lower() for c in view.cards)
            sources.update(mine)
            kinds = ", ".join(f"{k} {n}" for k, n in sorted(mine.items()))
            say(f"  {name:<14} {w.cards_granted:2d} 张卡 cards ({kinds}), 可用 spendable {yuan(w.spendable_fen)}, "
                f"邀请 invited {w.invites_made}")
        breakdown = ", ".join(f"{k} {n}" for k, n in sorted(sources.items()))
        say(f"✓ 全家已加入 family joined: 6 people, {total_cards} 张免单卡 cards = {yuan(total_fen)} ({breakdown})")
        if total_cards == STORY_FAMILY_CARDS:
            say(f"  与故事一致 matches the story: {STORY_FAMILY_CARDS} cards for six people in one chain")
        else:
            say(f"  故事里是 {STORY_FAMILY_CARDS} 张 / the story says {STORY_FAMILY_CARDS}; this suite's join rule gave "
                f"{total_cards} ({breakdown})")

    # --- 2. order by text --------------------------------------------------------------------

    async def order_by_text(self) -> None:
        title(f"2. 一句话点单 / one sentence: “{ORDER_TEXT}” near 杭州西湖文化广场")
        user = self.user("xiaoming")
        await self.join(user)
        md = self.auth(user)
        reply = await self.gw.OrderByText(gw.OrderByTextRequest(text=ORDER_TEXT, location=HANGZHOU), metadata=md, timeout=10)
        p = reply.preview
        if not p.preview_id:
            say(f"  需要澄清 clarification: {p.clarification}")
            self.problem("no order preview (nearby stores closed at this hour? --own-suite adds all-night stores)")
            return
        store = p.proposal.store
        say(f"  理解为 understood: {p.proposal.explanation or p.text}")
        say(f"  门店 store: {store.store.name} ({store.distance_meters:.0f} m)")
        for line in p.proposal.quote.lines:
            opts = "/".join(o.name for o in line.options)
            say(f"    {line.quantity} × {line.item_name} [{opts}]  {yuan(line.line_total_fen)}")
        say(f"  预览 preview: 合计 total {yuan(p.total_fen)}; 免单卡抵扣 card covers {yuan(p.card_covered_fen)}; "
            f"还需支付 to pay {yuan(p.payable_fen)}")
        placed = await self.gw.OrderByText(
            gw.OrderByTextRequest(request_id=rid(), preview_id=p.preview_id, confirm=True), metadata=md, timeout=10
        )
        order = placed.order
        self.ordered = order
        status = order_pb2.OrderStatus.Name(order.status)
        say(f"✓ ordered 已下单: order {order.order_id} from preview {p.preview_id[:10]}…, total {yuan(order.subtotal_fen)}, "
            f"card {yuan(order.card_discount_fen)}, to pay {yuan(order.payable_fen)} -> {status}")
        if order.status == order_pb2.ORDER_STATUS_PENDING_PAYMENT:
            paid = await self.gw.ConfirmPayment(
                gw.ConfirmPaymentRequest(request_id=rid(), order_id=order.order_id, payment_reference=order.payment.payment_reference),
                metadata=md, timeout=10,
            )
            say(f"  一张卡抵 {yuan(order.card_discount_fen)} (one card per order); 实付 paid {yuan(order.payable_fen)} "
                f"in the payment sandbox -> {order_pb2.OrderStatus.Name(paid.order.status)}")
        else:
            say(f"  分文未付 paid {yuan(order.payable_fen)}: the card covered all {yuan(order.card_discount_fen)}")
        if order.payable_fen:
            say(f"  故事里分文未付 / the story has them pay nothing; this suite covers one order with one card "
                f"(face value {yuan(order.card_discount_fen)}), so the rest, {yuan(order.payable_fen)}, was paid")

    # --- 2b. the merchant's side ----------------------------------------------------------------

    async def merchant(self) -> None:
        order = self.ordered
        if order is None or not order.order_id:
            return
        title(f"2b. 商家接单 / the store sees the order in its queue and makes it (merchant grant for {order.brand_id})")
        grant = mint_grant(self.settings.merchant_signing_key, f"{order.brand_id}-hq", brands=[order.brand_id])
        md = ((MERCHANT_TOKEN_KEY, grant),)  # the merchant's whole credential: it holds no internal token
        async with open_channel(self.settings, self.settings.order_addr) as channel:
            orders = order_service_pb2_grpc.OrderServiceStub(channel)
            queue = await orders.ListStoreOrders(
                order_service_pb2.ListStoreOrdersRequest(store_id=order.store_id, status=order_pb2.ORDER_STATUS_PAID), metadata=md, timeout=10,
            )
            if order.order_id not in {o.order_id for o in queue.orders}:
                self.problem(f"order {order.order_id} is not in its store's queue")
                return
            say(f"  待接单 to accept at {order.store_name or order.store_id}: {len(queue.orders)} order(s), ours among them")
            for step in (order_pb2.ORDER_STATUS_ACCEPTED, order_pb2.ORDER_STATUS_PREPARING, order_pb2.ORDER_STATUS_READY):
                await orders.UpdateOrderStatus(
                    order_service_pb2.UpdateOrderStatusRequest(request_id=rid(), order_id=order.order_id, status=step), metadata=md, timeout=10,
                )
            rival = ((MERCHANT_TOKEN_KEY, mint_grant(self.settings.merchant_signing_key, "rival-hq", brands=["rival"])),)
            try:
                await orders.ListStoreOrders(order_service_pb2.ListStoreOrdersRequest(store_id=order.store_id), metadata=rival, timeout=10)
                self.problem("a rival brand's grant listed this store's orders")
            except grpc.aio.AioRpcError as err:
                say(f"  别家商户看不到 a rival's grant: {err.code().name} {error_details(err)['reason']}")
        seen = await self.gw.GetOrder(gw.GetOrderRequest(order_id=order.order_id), metadata=self.auth(self.user("xiaoming")), timeout=10)
        say(f"✓ made 已出餐: the buyer now sees {order_pb2.OrderStatus.Name(seen.order.status)} "
            f"({' → '.join(order_pb2.OrderStatus.Name(h.status).removeprefix('ORDER_STATUS_') for h in seen.order.history)})")

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
        if not order.order_id:
            say(f"  需要澄清 clarification: {reply.preview.clarification}")
            self.problem("no order placed (nearby stores closed at this hour? --own-suite adds all-night stores)")
            return
        say(f"  order {order.order_id} at {order.store_name or order.store_id}: total {yuan(order.subtotal_fen)}, "
            f"card {yuan(order.card_discount_fen)}, to pay {yuan(order.payable_fen)} -> {order_pb2.OrderStatus.Name(order.status)}")
        during = (await self.wallet(user)).wallet.wallet.spendable_fen
        cancelled = await self.gw.CancelOrder(
            gw.CancelOrderRequest(request_id=rid(), order_id=order.order_id, reason="点错了 ordered by mistake"), metadata=md, timeout=10
        )
        after = (await self.wallet(user)).wallet.wallet.spendable_fen
        c = cancelled.order
        say(f"  可用额度 spendable: before {yuan(before)} -> after ordering {yuan(during)} -> after cancelling {yuan(after)}")
        if c.status == order_pb2.ORDER_STATUS_CANCELLED and c.card_returned and after == before:
            say(f"✓ cancelled 已取消: order {c.order_id} {order_pb2.OrderStatus.Name(c.status)}, card returned 卡已退回 "
                f"({yuan(after)} spendable again)")
        else:
            self.problem(f"cancel: status {order_pb2.OrderStatus.Name(c.status)}, card_returned={c.card_returned}, "
                         f"spendable {yuan(before)} -> {yuan(after)}")

    # --- 4. lottery: qualify and enter ---------------------------------------------------------

    async def lottery_entry(self) -> None:
        title("4. 邀请三位新用户，参加今日抽奖 / invite three new users, enter today's draw")
        host = self.user("laowang")
        self.draw_host = host
        phrase = (await self.join(host)).wallet.wallet.pass_phrase_text
        for i in range(3):
            friend = self.user(f"friend{i + 1}")
            joined = await self.join(friend, f"{phrase} 帮我点一下")
            say(f"  {friend} joined with 老王's pass-phrase: accepted={joined.invite_accepted}")
        lottery = (await self.wallet(host)).wallet.lottery
        say(f"  老王 lottery progress 进度 {lottery.invites}/{lottery.threshold}, qualified={lottery.qualified}")
        md = self.auth(host)
        try:
            entered = await self.gw.EnterLottery(gw.EnterLotteryRequest(request_id=rid()), metadata=md, timeout=10)
            draw = entered.draw
            self.draw_day = draw.day
            say(f"✓ entered 已报名 {draw.day}'s draw: {draw.entrant_count} entrant(s) so far, {draw.winner_count} prizes of "
                f"{draw.prize_name} {yuan(draw.prize_value_fen)}")
        except grpc.aio.AioRpcError as err:
            d = error_details(err)
            say(f"  EnterLottery -> {err.code().name} {d['reason']}: {d['message']}")
            if d["reason"] != "ENTRIES_CLOSED" or (self.own_suite and self.draw_day_fits):
                self.problem(f"could not enter today's draw ({d['reason']})")
            else:
                self.limits.append("entering today's draw: this suite's entries closed at its cut-off")
        results = (await self.gw.GetDrawResults(gw.GetDrawResultsRequest(day=self.draw_day), metadata=md, timeout=10)).results
        draw = results.draw
        self.draw_day = draw.day
        cutoff = draw.cutoff_time.ToDatetime(tzinfo=timezone.utc)
        if draw.commitment:
            say(f"  承诺 commitment, published {local_hm(draw.commit_time.ToDatetime(tzinfo=timezone.utc))} before the "
                f"{local_hm(cutoff)} cut-off (Asia/Shanghai): sha256(seed) = {draw.commitment[:24]}…")
        else:
            say(f"  {draw.day}: no seed committed yet")

    # --- 5. lottery: the operator's part ------------------------------------------------------

    async def lottery_draw(self) -> None:
        title("6. 截止、开奖、独立验证 / cut-off, draw, independent verification")
        if not self.draw_day:
            self.problem("no draw day known (section 4 did not reach the lottery)")
            return
        day = self.draw_day
        try:
            committed = (await self.lottery.CommitDraw(
                lottery_service_pb2.CommitDrawRequest(request_id=rid(), campaign_id=self.campaign_id, day=day),
                metadata=self.admin, timeout=10,
            )).draw
            say(f"  CommitDraw (admin): seed committed at {local_hm(committed.commit_time.ToDatetime(tzinfo=timezone.utc))}, "
                f"never replaced: sha256 = {committed.commitment[:24]}…")
        except grpc.aio.AioRpcError as err:
            d = error_details(err)
            say(f"  CommitDraw (admin) -> {err.code().name} {d['reason']}: {d['message']}")
        draw = (await self.gw.GetDrawResults(gw.GetDrawResultsRequest(day=day), metadata=self.auth(self.draw_host), timeout=10)).results.draw
        cutoff = draw.cutoff_time.ToDatetime(tzinfo=timezone.utc)
        wait = (cutoff - datetime.now(timezone.utc)).total_seconds()
        if not draw.commitment:
            # Nobody committed a seed before the cut-off (e.g. the suite started after it): a
            # commitment made now would prove nothing, so the lottery rightly has no draw today.
            text = f"{day} 没有截止前的承诺，今日不开奖 / {day} has no seed committed before its cut-off, so it has no draw"
            if self.own_suite:
                self.problem(text)
                return
            say(f"  {text}. Latest drawn day instead:")
            self.limits.append(f"running and verifying {day}'s draw: no seed was committed before its cut-off")
            await self.show_latest()
            return
        if draw.status != lottery_pb2.DRAW_STATUS_DRAWN and wait > (WAIT_FOR_RUNNING_SUITE_S if not self.own_suite else 3600):
            left = timedelta(seconds=int(wait))
            say(f"  报名 {local_hm(cutoff)} (Asia/Shanghai) 截止，还有 {left} / entries close at {local_hm(cutoff)} "
                f"Asia/Shanghai, in {left}.")
            say("  The lottery never draws before the cut-off (by design), and this suite's cut-off is too far off to wait for.")
            say("  To watch a whole day in one run: `python -m scripts.demo --own-suite` (make demo DEMO_ARGS=--own-suite)")
            say("  starts a throw-away suite whose entries close --cutoff-in seconds (45 by default) from now.")
            say("  Meanwhile, the latest drawn day here:")
            self.limits.append(f"running and verifying {day}'s draw: its cut-off is {left} away")
            await self.show_latest()
            return
        if wait > 0:
            say(f"  报名将于 {local_hm(cutoff)} 截止 / entries close at {local_hm(cutoff)} Asia/Shanghai; "
                "the lottery refuses to draw before that, so we wait")
            await wait_until(cutoff, "开奖前 until the cut-off")
            say(f"  截止 cut-off {local_hm(cutoff)} passed")
        await self.run_draw(day)
        await self.verify(day)

    async def run_draw(self, day: str) -> None:
        deadline = time.monotonic() + RUN_DRAW_PATIENCE_S
        while True:
            asked = datetime.now(timezone.utc)
            try:
                draw = (await self.lottery.RunDraw(
                    lottery_service_pb2.RunDrawRequest(request_id=rid(), campaign_id=self.campaign_id, day=day),
                    metadata=self.admin, timeout=30,
                )).draw
            except grpc.aio.AioRpcError as err:
                d = error_details(err)
                if d["reason"] == "DRAW_NOT_CLOSED" and time.monotonic() < deadline:
                    await asyncio.sleep(0.5)
                    continue
                self.problem(f"RunDraw (admin) -> {err.code().name} {d['reason']}: {d['message']}")
                return
            drawn_at = draw.draw_time.ToDatetime(tzinfo=timezone.utc)
            # RunDraw is idempotent: when the scheduler drew first, it returns that result.
            who = "the lottery scheduler" if drawn_at < asked - timedelta(milliseconds=50) else "this RunDraw"
            say(f"  RunDraw (admin): drawn at {local_hm(drawn_at)} by {who}; seed revealed {draw.seed[:24]}…")
            say(f"  {draw.entrant_count} entrant(s), {len(draw.winners)} winner(s) of up to {draw.winner_count}: "
                f"{', '.join(list(draw.winners)[:5])}{' …' if len(draw.winners) > 5 else ''}")
            return

    async def verify(self, day: str) -> None:
        host = self.draw_host
        res = (await self.gw.GetDrawResults(gw.GetDrawResultsRequest(day=day), metadata=self.auth(host), timeout=30)).results
        d = res.draw
        say(f"  网关独立验证 the gateway's own check: verified={res.verified} — {res.verification_note}")
        say(f"  {'🎉 ' if res.caller_won else ''}老王 {'中奖了 won' if res.caller_won else '未中奖 did not win'} "
            f"({d.entrant_count} entrant(s), {d.winner_count} prizes)")
        try:
            result = await self.fetch_verify_draw(day)
        except grpc.aio.AioRpcError as err:
            self.problem(f"VerifyDraw -> {err.code().name} {error_details(err)['reason']}")
            return
        checks = draw_checker.check(result)
        say("  独立验证器 services.lottery.verify, fed by the gateway's VerifyDraw as 老王 sees it")
        say("  (a stdlib re-implementation of the published algorithm):")
        for ok, line in checks:
            say(f"    {'PASS' if ok else 'FAIL'}  {line}")
        passed = sum(1 for ok, _ in checks if ok)
        if res.verified and passed == len(checks) and d.status == lottery_pb2.DRAW_STATUS_DRAWN:
            say(f"✓ verified 验证通过: {d.day} draw — gateway verified=True and {passed}/{len(checks)} checker checks pass")
        else:
            self.problem(f"draw {d.day} not verified: gateway verified={res.verified}, checker {passed}/{len(checks)}")
        if not self.own_suite:
            say(f"  anyone with a user token can re-check: MIANDAN_USER_TOKEN=<token> python -m services.lottery.verify "
                f"--gateway {self.gateway_addr} --day {d.day}")

    async def fetch_verify_draw(self, day: str) -> dict:
        """All pages of the gateway's VerifyDraw, as an end user reads them, in the JSON the
        checker reads (what `verify --dump` writes)."""
        entrants: list[str] = []
        first = None
        token = ""
        for _ in range(1000):  # 10 M entrants at 10,000 a page; bounds a misbehaving server
            page = (await self.gw.VerifyDraw(
                gw.VerifyDrawRequest(day=day, page_size=10_000, page_token=token),
                metadata=self.auth(self.draw_host), timeout=30,
            )).verification
            first = first or page
            entrants.extend(page.entrants)
            token = page.next_page_token
            if not token:
                break
        out = json_format.MessageToDict(first, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
        out["entrants"] = entrants
        out.pop("next_page_token", None)
        return out

    async def show_latest(self) -> None:
        draws = await self.lottery.ListDraws(
            lottery_service_pb2.ListDrawsRequest(campaign_id=self.campaign_id, page_size=10), metadata=self.admin, timeout=10
        )
        drawn = [d for d in draws.draws if d.status == lottery_pb2.DRAW_STATUS_DRAWN]
        if not drawn:
            say("  no day has been drawn yet in this suite.")
            return
        await self.verify(drawn[0].day)

    # --- 5. browse ---------------------------------------------------------------------------

    async def browse(self) -> None:
        title("5. 附近门店 / stores near 西湖文化广场 (SHEDDABLE under load)")
        reply = await self.gw.SearchStores(
            gw.SearchStoresRequest(search=catalog_service_pb2.SearchStoresRequest(location=HANGZHOU, radius_meters=1500, page_size=5)),
            metadata=self.auth(self.user("xiaoming")), timeout=10,
        )
        for hit in reply.stores:
            say(f"  {hit.distance_meters:6.0f} m  {hit.store.name}  {'营业中 open' if hit.open_now else '休息中 closed'}")


    # --- 7. own suite only: the books balance -------------------------------------------------

    async def audit(self) -> None:
        """`make audit` on the throw-away suite before it stops: whatever the story did, the
        cross-service invariants (budget, caps, one redeemed card per paid order, draws) hold."""
        title("7. 对账 / audit: cross-service invariants after the story")
        from services.audit import run_audit

        try:
            findings = await asyncio.wait_for(run_audit(self.settings), timeout=60)
        except Exception as exc:  # a broken audit is reported as a problem, not a traceback
            self.problem(f"the audit could not run: {exc!r}"[:300])
            return
        if findings:
            for finding in findings:
                say(f"  {finding}")
            self.problem(f"audit: {len(findings)} finding(s)")
        else:
            say("✓ audited 对账无误: budget, caps, cards vs orders and draws all consistent (0 findings)")


# --- running it ------------------------------------------------------------------------------


# Set by Ctrl-C / SIGTERM (interrupt_story): the story stops at its next step whatever
# swallowed the cancel.
_interrupted = False


def interrupt_story(task: asyncio.Task, loop: asyncio.AbstractEventLoop) -> None:
    """Stop the story: flag it, and cancel its task every 0.5 s until it has ended."""
    global _interrupted
    _interrupted = True
    if not task.done():
        task.cancel()
        loop.call_later(0.5, interrupt_story, task, loop)


async def play(demo: Demo, *, draw_part: bool) -> bool:
    """The story's sections in order; False when the suite stopped answering."""
    steps = [demo.night_stores] if demo.own_suite else []
    steps += [demo.family, demo.order_by_text, demo.merchant, demo.cancel, demo.lottery_entry, demo.browse]
    if draw_part:
        steps.append(demo.lottery_draw)
    if demo.own_suite:
        steps.append(demo.audit)
    for step in steps:
        if _interrupted:
            raise asyncio.CancelledError()
        try:
            await step()
        except grpc.aio.AioRpcError as err:
            if _interrupted:
                # A call cancelled by the Ctrl-C (CANCELLED) is the interrupt, not a problem.
                raise asyncio.CancelledError() from err
            d = error_details(err)
            demo.problem(f"{step.__name__}: {err.code().name} {d['reason'] or ''}: {d['message']}")
            if err.code() == grpc.StatusCode.UNAVAILABLE and d["reason"] != "OVERLOADED":
                say("  the suite stopped answering")
                return False
    return True


async def start_own_suite(lead: float) -> tuple[OwnSuite, CutoffPlan]:
    plan = plan_cutoff(datetime.now(timezone.utc), lead)
    suite = OwnSuite(plan)
    if plan.cutoff is None:
        say(f"  {plan.reason}; the draw part is skipped this time (try again after 00:00).")
    else:
        say(f"  starting an own suite (python -m services.suite, data in {suite.data}) with "
            f"MIANDAN_LOTTERY_CUTOFF={plan.env_value} (Asia/Shanghai), {(plan.at - datetime.now(timezone.utc)).total_seconds():.0f} s from now")
    try:
        await suite.start()
    except BaseException:
        suite.stop()
        raise
    say(f"  suite ready in {suite.ready_after:.1f} s: gateway {suite.addr('gateway')}, lottery {suite.addr('lottery')}")
    return suite, plan


async def main_async(args: argparse.Namespace, holder: list[OwnSuite]) -> int:
    settings = Settings.from_env("gateway")
    gateway_addr = args.gateway or settings.gateway_addr
    lottery_addr = args.lottery or settings.lottery_addr
    own = args.own_suite
    say(f"miandan demo 免单演示 — {datetime.now(SHANGHAI):%Y-%m-%d %H:%M:%S} Asia/Shanghai")
    if not own:
        if await answering(settings, gateway_addr):
            say(f"  using the suite answering at {gateway_addr} (lottery operator steps at {lottery_addr}, "
                f"the store's at {settings.order_addr})")
        else:
            say(f"  no suite answers at {gateway_addr}; the demo starts its own")
            own = True
    plan = None
    if own:
        suite, plan = await start_own_suite(args.cutoff_in)
        holder.append(suite)
        left = (plan.at - datetime.now(timezone.utc)).total_seconds()
        if plan.cutoff is not None and left < STORY_SECONDS:
            # A slow start ate the lead: entries would close mid-story. One fresh start with the
            # start-up time added; the old suite's draw is already committed with its cut-off.
            say(f"  only {left:.0f} s left before that cut-off, too little to play the story; restarting with a later one")
            suite.stop()
            suite.remove_data()
            holder.clear()
            suite, plan = await start_own_suite(args.cutoff_in + suite.ready_after + STORY_SECONDS)
            holder.append(suite)
        settings = Settings.from_env("gateway", suite.env)
        gateway_addr, lottery_addr = suite.addr("gateway"), suite.addr("lottery")
    demo = Demo(settings, gateway_addr, lottery_addr, own_suite=own, draw_day_fits=plan is None or plan.cutoff is not None)
    say(f"  campaign {demo.campaign_id}, users *-{demo.suffix}")
    start = time.perf_counter()
    try:
        alive = await play(demo, draw_part=plan is None or plan.cutoff is not None)
        if plan is not None and plan.cutoff is None:
            demo.limits.append("the draw: no same-day cut-off fits before local midnight; run the demo again after 00:00")
    finally:
        await demo.close()
    say()
    if not alive or demo.problems:
        say(f"demo finished in {time.perf_counter() - start:.1f} s with {len(demo.problems)} problem(s):")
        for p in demo.problems:
            say(f"  - {p}")
        return 1
    if demo.limits:
        say(f"demo finished in {time.perf_counter() - start:.1f} s; not shown with this suite at this hour:")
        for limit in demo.limits:
            say(f"  - {limit}")
        if not demo.own_suite:
            say("  `python -m scripts.demo --own-suite` (make demo DEMO_ARGS=--own-suite) plays the whole day")
        return 0
    say(f"demo finished in {time.perf_counter() - start:.1f} s: every step ran as the story says")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.demo", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--own-suite", action="store_true", help="start a throw-away suite even if one is running")
    # The setting takes whole seconds, so the wait is this lead (plus under a second). It must
    # cover the suite's start and the story up to its entry (STORY_SECONDS); a start that eats
    # too much of it costs a second start with a later cut-off.
    parser.add_argument("--cutoff-in", type=float, default=45.0, metavar="SECONDS",
                        help="own suite: entries close at the first whole second at least this far ahead (default 45)")
    parser.add_argument("--gateway", help="gateway of a running suite (default MIANDAN_GATEWAY_ADDR or 127.0.0.1:50050)")
    parser.add_argument("--lottery", help="lottery of a running suite, for the operator steps (default MIANDAN_LOTTERY_ADDR)")
    args = parser.parse_args(argv)
    if not 0 < args.cutoff_in <= 600:
        parser.error("--cutoff-in must be in (0, 600] seconds")
    try:
        Settings.from_env("gateway")  # main_async reads it first: a bad MIANDAN_* is one line, not a traceback
    except ValueError as exc:
        print(f"demo: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    holder: list[OwnSuite] = []
    code = 1

    async def run() -> int:
        # Ctrl-C and SIGTERM cancel the story, then the suite is stopped below. One cancel can
        # be lost (on Python 3.11 asyncio.wait_for answers a result that arrives as it is
        # cancelled; a call cancelled under a step can surface as an error the step handles),
        # and CI saw a Ctrl-C right after the suite came up ignored for the whole story:
        # interrupt_story flags the story, which ends at its next step, and cancels again.
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        # SIGHUP too: the own suite runs in its own session, so a terminal that goes away hangs
        # up only the demo, which by default would die and leave the five servers running.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, interrupt_story, task, loop)
        return await main_async(args, holder)

    try:
        code = asyncio.run(run())
    except (KeyboardInterrupt, asyncio.CancelledError):
        say("\n  interrupted 已中断")
        code = 130
    except RuntimeError as exc:  # the own suite did not start
        say(f"  ✗ {exc}")
        code = 1
    finally:
        for suite in holder:
            say("  stopping the own suite 正在停止…")
            # A second Ctrl-C (or a hang-up) must not orphan the five servers mid-stop; the wait is bounded.
            previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGHUP)}
            try:
                rc = suite.stop()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
            clean = rc in (0, -signal.SIGTERM)
            # Kept for a look at the logs when something went wrong; an interrupt is no failure.
            keep = not clean or code not in (0, 130)
            say(f"  own suite stopped {'cleanly' if clean else f'with code {rc}'}" + (f"; data and logs kept in {suite.data}" if keep else ""))
            if not keep:
                suite.remove_data()
    return code


if __name__ == "__main__":
    sys.exit(main())
