"""grpc.aio servicer of miandan.gateway.v1.GatewayService: authenticate, set the upstream
deadline and criticality, delegate to compose.Gateway. Nothing else.

The kit's AccessPolicy marks these RPCs PUBLIC (no service credential); the end user is
authenticated here, once per call, from `authorization: Bearer <jwt>`. The user id comes from the
token only: no request field can name another user.
"""
from __future__ import annotations

import time
from typing import Any, AsyncIterator, Awaitable, TypeVar

import grpc

from miandan.gateway.v1 import gateway_service_pb2 as pb, gateway_service_pb2_grpc
from services.common.admission import CRITICAL, DEFAULT, SHEDDABLE
from services.common.deadline import remaining
from services.common.errors import Unavailable, UpstreamBusy

from .auth import TokenVerifier
from .clients import CallOptions, is_transport_failure
from .compose import Gateway
from .user_rates import UserRates
from .watches import TOKEN_CHECK_S, WatchSlots, while_token_lasts

__all__ = ["CRITICALITY", "GatewayServicer", "UPSTREAM_UNAVAILABLE"]

T = TypeVar("T")
UPSTREAM_UNAVAILABLE = "UPSTREAM_UNAVAILABLE"
# After the channel's own retries: tell the user to come back shortly, as for overload.
UPSTREAM_RETRY_AFTER_MS = 1000

# What is shed first when the crowd is bigger than capacity: browsing before wallets, wallets
# before money. Short names; the kit's CallPipeline reads this map.
CRITICALITY: dict[str, str] = {
    "PlaceOrder": CRITICAL,
    "ConfirmPayment": CRITICAL,
    "CancelOrder": CRITICAL,
    "Join": DEFAULT,
    "GetWallet": DEFAULT,
    "OrderByText": DEFAULT,
    "GetOrder": DEFAULT,
    "ListOrders": DEFAULT,
    "WatchOrder": DEFAULT,
    "EnterLottery": DEFAULT,
    "SearchStores": SHEDDABLE,
    "GetMenu": SHEDDABLE,
    "GetDrawResults": SHEDDABLE,
    "VerifyDraw": SHEDDABLE,
}


def restated(err: grpc.aio.AioRpcError) -> BaseException:
    """Upstream answers pass through unchanged (the kit forwards their status and details), but
    a transport failure is restated: its text names internal addresses, which end users must
    not see, and it carries no retry advice. A call the upstream's core turned away (CANCELLED)
    found it busy; one that could not connect found it down."""
    if is_transport_failure(err):
        busy = err.code() is grpc.StatusCode.CANCELLED
        return (UpstreamBusy if busy else Unavailable)(
            UPSTREAM_UNAVAILABLE,
            "服务暂时不可用，请稍后再试 / service temporarily unavailable, please retry shortly",
            UPSTREAM_RETRY_AFTER_MS,
        )
    return err


async def guarded(awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except grpc.aio.AioRpcError as err:
        raise restated(err) from None


class GatewayServicer(gateway_service_pb2_grpc.GatewayServiceServicer):
    def __init__(
        self, gateway: Gateway, verifier: TokenVerifier, metadata: Any, watches: WatchSlots, rates: UserRates | None = None
    ) -> None:
        """metadata(criticality) -> the upstream call metadata (internal credential + criticality)."""
        self.gateway = gateway
        self.verifier = verifier
        self._metadata = metadata
        self.watches = watches
        self.rates = rates if rates is not None else UserRates(0, 1)
        self.token_check_s = TOKEN_CHECK_S  # how often a quiet WatchOrder looks at its token's expiry

    def _user(self, context: Any) -> str:
        user = self.verifier.user_of(context.invocation_metadata())
        self.rates.take(user)
        return user

    def _begin(self, context: Any, criticality: str) -> tuple[str, CallOptions]:
        user = self._user(context)
        return user, CallOptions(time.monotonic() + remaining(context), self._metadata(criticality))

    async def Join(self, request: pb.JoinRequest, context: Any) -> pb.JoinResponse:
        user, o = self._begin(context, DEFAULT)
        return await guarded(self.gateway.join(user, request.request_id, request.pass_phrase_text, o))

    async def GetWallet(self, request: pb.GetWalletRequest, context: Any) -> pb.GetWalletResponse:
        user, o = self._begin(context, DEFAULT)
        return pb.GetWalletResponse(wallet=await guarded(self.gateway.wallet_view(user, o)))

    async def OrderByText(self, request: pb.OrderByTextRequest, context: Any) -> pb.OrderByTextResponse:
        # Placing the order is the money path; a preview is DEFAULT (the RPC's admission level).
        user, o = self._begin(context, CRITICAL if request.confirm else DEFAULT)
        return await guarded(self.gateway.order_by_text(user, request, o))

    async def PlaceOrder(self, request: pb.PlaceOrderRequest, context: Any) -> pb.PlaceOrderResponse:
        user, o = self._begin(context, CRITICAL)
        return await guarded(self.gateway.place_order(user, request, o))

    async def ConfirmPayment(self, request: pb.ConfirmPaymentRequest, context: Any) -> pb.ConfirmPaymentResponse:
        user, o = self._begin(context, CRITICAL)
        return await guarded(self.gateway.confirm_payment(user, request, o))

    async def GetOrder(self, request: pb.GetOrderRequest, context: Any) -> pb.GetOrderResponse:
        user, o = self._begin(context, DEFAULT)
        return await guarded(self.gateway.get_order(user, request.order_id, o))

    async def ListOrders(self, request: pb.ListOrdersRequest, context: Any) -> pb.ListOrdersResponse:
        user, o = self._begin(context, DEFAULT)
        return await guarded(self.gateway.list_orders(user, request, o))

    async def CancelOrder(self, request: pb.CancelOrderRequest, context: Any) -> pb.CancelOrderResponse:
        user, o = self._begin(context, CRITICAL)
        return await guarded(self.gateway.cancel_order(user, request, o))

    async def WatchOrder(self, request: pb.WatchOrderRequest, context: Any) -> AsyncIterator[pb.WatchOrderResponse]:
        user, refused_from = self.verifier.session_of(context.invocation_metadata())
        self.rates.take(user)
        # A stream lives as long as the client wants and its token lasts: bounded by the
        # client's own deadline and the token's expiry (watches.while_token_lasts says why).
        left = context.time_remaining()
        o = CallOptions(None if left is None else time.monotonic() + left, self._metadata(DEFAULT))
        clock = self.verifier.clock
        with self.watches.held(user):  # released when the client goes away, however it does
            try:
                updates = self.gateway.watch_order(user, request.order_id, o)
                expired = lambda: clock.now().timestamp() >= refused_from  # noqa: E731
                async for update in while_token_lasts(updates, expired, self.token_check_s):
                    yield update
            except grpc.aio.AioRpcError as err:
                raise restated(err) from None

    async def SearchStores(self, request: pb.SearchStoresRequest, context: Any) -> pb.SearchStoresResponse:
        _, o = self._begin(context, SHEDDABLE)
        return await guarded(self.gateway.search_stores(request, o))

    async def GetMenu(self, request: pb.GetMenuRequest, context: Any) -> pb.GetMenuResponse:
        _, o = self._begin(context, SHEDDABLE)
        return await guarded(self.gateway.get_menu(request.store_id, o))

    async def EnterLottery(self, request: pb.EnterLotteryRequest, context: Any) -> pb.EnterLotteryResponse:
        user, o = self._begin(context, DEFAULT)
        return await guarded(self.gateway.enter_lottery(user, request.request_id, o))

    async def GetDrawResults(self, request: pb.GetDrawResultsRequest, context: Any) -> pb.GetDrawResultsResponse:
        user, o = self._begin(context, SHEDDABLE)
        return await guarded(self.gateway.draw_results(user, request.day, o))

    async def VerifyDraw(self, request: pb.VerifyDrawRequest, context: Any) -> pb.VerifyDrawResponse:
        _, o = self._begin(context, SHEDDABLE)
        return await guarded(self.gateway.verify_draw(request, o))

