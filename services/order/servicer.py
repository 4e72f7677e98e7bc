"""grpc.aio servicer of miandan.order.v1.OrderService: proto <-> model, nothing else."""
from __future__ import annotations

from typing import Any, AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp

from miandan.catalog.v1 import catalog_pb2
from miandan.order.v1 import order_pb2, order_service_pb2, order_service_pb2_grpc
from services.common.auth import MERCHANT, AccessPolicy
from services.common.errors import InvalidArgument, PermissionDenied
from services.common.merchant_grant import MerchantScope

from . import model
from .handlers import Budget, CartView, OrderService, PlaceOrderInput, selections_of
from .model import Order

__all__ = ["OrderServicer", "order_to_proto", "cart_to_proto", "merchant_view"]

ACTS_AS_USER = PermissionDenied(
    "MERCHANT_CANNOT_ACT_AS_USER",
    "商户凭证只能取消自己门店的订单，不能代用户取消 / a merchant credential cancels its own stores' orders "
    "(no user_id), never on a user's behalf",
)

_STATUS = {name: order_pb2.OrderStatus.Value(f"ORDER_STATUS_{name}") for name in model.LIVE_STATUSES}
_STATUS_BY_VALUE = {v: k for k, v in _STATUS.items()}
_PAYMENT = {
    name: order_pb2.PaymentStatus.Value(f"PAYMENT_STATUS_{name}")
    for name in (
        model.PAY_NOT_REQUIRED,
        model.PAY_PENDING,
        model.PAY_CAPTURED,
        model.PAY_REFUNDED,
        model.PAY_DECLINED,
        model.PAY_VOIDED,
    )
}
_CARD_USE = {
    order_pb2.CARD_USE_UNSPECIFIED: model.CARD_BEST,
    order_pb2.CARD_USE_BEST: model.CARD_BEST,
    order_pb2.CARD_USE_NONE: model.CARD_NONE,
    order_pb2.CARD_USE_SPECIFIC: model.CARD_SPECIFIC,
    order_pb2.CARD_USE_REQUIRED: model.CARD_REQUIRED,
}


def _ts(ms: int) -> Timestamp:
    return Timestamp(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def order_to_proto(o: Order) -> order_pb2.Order:
    p = o.payment
    return order_pb2.Order(
        order_id=o.order_id,
        request_id=o.request_id,
        user_id=o.user_id,
        store_id=o.store_id,
        store_name=o.store_name,
        brand_id=o.brand_id,
        lines=[
            order_pb2.OrderLine(
                item_id=ln.item_id,
                item_name=ln.item_name,
                quantity=ln.quantity,
                options=[
                    catalog_pb2.PricedOption(
                        group_id=op.group_id, option_id=op.option_id, name=op.name, price_delta_fen=op.price_delta_fen
                    )
                    for op in ln.options
                ],
                unit_price_fen=ln.unit_price_fen,
                line_total_fen=ln.line_total_fen,
            )
            for ln in o.lines
        ],
        subtotal_fen=o.subtotal_fen,
        card_id=o.card_id,
        card_discount_fen=o.card_discount_fen,
        payable_fen=o.payable_fen,
        status=_STATUS.get(o.status, order_pb2.ORDER_STATUS_UNSPECIFIED),
        history=[
            order_pb2.StatusChange(status=_STATUS[h.status], time=_ts(h.time_ms), actor=h.actor, note=h.note)
            for h in o.history
        ],
        payment=order_pb2.Payment(
            payment_id=p.payment_id,
            provider=p.provider,
            amount_fen=p.amount_fen,
            status=_PAYMENT.get(p.status, order_pb2.PAYMENT_STATUS_UNSPECIFIED),
            payment_reference=p.reference,
            expire_time=_ts(p.expire_ms) if p.expire_ms else None,
            refunded_fen=p.refunded_fen,
            note=p.note,
        ),
        create_time=_ts(o.create_ms),
        update_time=_ts(o.update_ms),
        cancel_reason=o.cancel_reason,
        card_returned=o.card_returned,
        campaign_id=o.campaign_id,
    )


def merchant_view(order: order_pb2.Order) -> order_pb2.Order:
    """The order as a merchant grant sees it: what to make, for how much, and where it stands,
    not who the buyer is on the platform. A grant is held outside the platform, by 300,000
    stores' systems: the buyer's account id (the same at every store: a merchant could follow a
    buyer across its stores and match it with other sources), the card and the buyer's request
    id, and the payment's identifiers (the reference the buyer pays with) are the platform's.
    Redacted here, not in the message: the same Order is the buyer's through the gateway."""
    order.user_id = ""
    order.request_id = ""
    order.card_id = ""
    order.payment.payment_id = ""
    order.payment.payment_reference = ""
    return order


def _as_seen_by(merchant: MerchantScope | None, order: Order) -> order_pb2.Order:
    p = order_to_proto(order)
    return p if merchant is None else merchant_view(p)


def cart_to_proto(c: CartView) -> order_pb2.Cart:
    priced = {}
    problems = []
    total = 0
    if c.quote is not None:
        total = c.quote.total_fen
        for idx, ln in zip(c.quote.line_indexes, c.quote.lines):
            priced[idx] = catalog_pb2.QuotedLine(
                line_index=idx,
                item_id=ln.item_id,
                item_name=ln.item_name,
                quantity=ln.quantity,
                options=[
                    catalog_pb2.PricedOption(
                        group_id=op.group_id, option_id=op.option_id, name=op.name, price_delta_fen=op.price_delta_fen
                    )
                    for op in ln.options
                ],
                unit_price_fen=ln.unit_price_fen,
                line_total_fen=ln.line_total_fen,
            )
        problems = [
            catalog_pb2.QuoteProblem(line_index=p.line_index, item_id=p.item_id, reason=p.reason, message=p.message)
            for p in c.quote.problems
        ]
    return order_pb2.Cart(
        user_id=c.user_id,
        store_id=c.store_id,
        lines=[
            order_pb2.CartLine(
                selection=catalog_pb2.LineSelection(
                    item_id=s.item_id,
                    quantity=s.quantity,
                    options=[catalog_pb2.OptionChoice(group_id=g, option_id=o) for g, o in s.options],
                ),
                priced=priced.get(i),
            )
            for i, s in enumerate(c.selections)
        ],
        total_fen=total,
        problems=problems,
        orderable=c.orderable,
    )


def _budget(context: Any) -> Budget:
    return Budget(context.time_remaining())


class OrderServicer(order_service_pb2_grpc.OrderServiceServicer):
    def __init__(self, service: OrderService, policy: AccessPolicy) -> None:
        self.service = service
        self.policy = policy

    async def AddCartItem(self, request: Any, context: Any) -> Any:
        line = request.line
        selection = selections_of([line])[0]
        cart = await self.service.add_cart_item(
            request.user_id, request.store_id, selection, request.request_id, _budget(context)
        )
        return order_service_pb2.AddCartItemResponse(cart=cart_to_proto(cart))

    async def GetCart(self, request: Any, context: Any) -> Any:
        cart = await self.service.get_cart(request.user_id, _budget(context))
        return order_service_pb2.GetCartResponse(cart=cart_to_proto(cart))

    async def ClearCart(self, request: Any, context: Any) -> Any:
        cart = await self.service.clear_cart(request.user_id, request.request_id, _budget(context))
        return order_service_pb2.ClearCartResponse(cart=cart_to_proto(cart))

    async def PlaceOrder(self, request: Any, context: Any) -> Any:
        card_use = _CARD_USE.get(request.card_use)
        if card_use is None:
            raise InvalidArgument("card_use", "未知的取值 / unknown value")
        order = await self.service.place_order(
            PlaceOrderInput(
                request_id=request.request_id,
                user_id=request.user_id,
                store_id=request.store_id,
                lines=selections_of(request.lines),
                from_cart=request.from_cart,
                card_use=card_use,
                card_id=request.card_id,
                campaign_id=request.campaign_id,
            ),
            _budget(context),
        )
        return order_service_pb2.PlaceOrderResponse(order=order_to_proto(order))

    async def ConfirmPayment(self, request: Any, context: Any) -> Any:
        order = await self.service.confirm_payment(
            request.order_id, request.user_id, request.payment_reference, request.request_id, _budget(context)
        )
        return order_service_pb2.ConfirmPaymentResponse(order=order_to_proto(order))

    async def GetOrder(self, request: Any, context: Any) -> Any:
        order = await self.service.get_order(request.order_id, request.user_id)
        return order_service_pb2.GetOrderResponse(order=order_to_proto(order))

    async def ListOrders(self, request: Any, context: Any) -> Any:
        orders, token = await self.service.list_orders(request.user_id, request.page_size, request.page_token)
        return order_service_pb2.ListOrdersResponse(orders=[order_to_proto(o) for o in orders], next_page_token=token)

    async def ListAllOrders(self, request: Any, context: Any) -> Any:
        orders, token = await self.service.list_all_orders(request.page_size, request.page_token)
        return order_service_pb2.ListAllOrdersResponse(orders=[order_to_proto(o) for o in orders], next_page_token=token)

    async def ListStoreOrders(self, request: Any, context: Any) -> Any:
        status = ""
        if request.status:
            status = _STATUS_BY_VALUE.get(request.status, "")
            if not status:
                raise InvalidArgument("status", f"未知的订单状态 {request.status} / unknown order status {request.status}")
        merchant = self.policy.merchant_scope(context.invocation_metadata())
        orders, token = await self.service.list_store_orders(
            request.store_id, status, request.page_size, request.page_token, merchant=merchant,
        )
        return order_service_pb2.ListStoreOrdersResponse(orders=[_as_seen_by(merchant, o) for o in orders], next_page_token=token)

    async def WatchStoreOrders(self, request: Any, context: Any) -> AsyncIterator[Any]:
        metadata = context.invocation_metadata()
        merchant = self.policy.merchant_scope(metadata)

        def still_granted() -> None:
            # The stream outlives the check made when it opened: a grant that has expired or
            # been revoked since must not keep receiving the store's orders, nor keep its
            # streams (they count against its merchant's limits, which a new grant then shares).
            # Checked per change before anything is sent, and while the store is quiet.
            err = self.policy.check(MERCHANT, metadata, context)
            if err is not None:
                raise err

        async def opened() -> None:
            # The stream's headers, sent before any order: the client's cue that the stream
            # follows the store, so a ListStoreOrders made after them misses nothing.
            await context.send_initial_metadata(())

        async for order in self.service.watch_store(
            request.store_id, merchant=merchant, still_granted=None if merchant is None else still_granted, opened=opened,
        ):
            yield order_service_pb2.WatchStoreOrdersResponse(order=_as_seen_by(merchant, order))

    async def CancelOrder(self, request: Any, context: Any) -> Any:
        merchant = None
        metadata = context.invocation_metadata()
        if not request.user_id:
            # A cancellation without a user is the merchant's: it needs the merchant credential.
            err = self.policy.check(MERCHANT, metadata, context)
            if err is not None:
                raise err
            merchant = self.policy.merchant_scope(metadata)
        elif not self.policy.is_internal(metadata, context):
            # The user's path trusts user_id as the gateway's word for who signed in. A merchant
            # (its credential alone let it this far) naming a buyer would cancel any store's order.
            raise ACTS_AS_USER
        order = await self.service.cancel_order(
            request.order_id, request.user_id, request.reason, request.request_id, _budget(context), merchant=merchant
        )
        return order_service_pb2.CancelOrderResponse(order=_as_seen_by(merchant, order))

    async def UpdateOrderStatus(self, request: Any, context: Any) -> Any:
        target = _STATUS_BY_VALUE.get(request.status, "")
        merchant = self.policy.merchant_scope(context.invocation_metadata())
        order = await self.service.update_status(request.order_id, target, request.note, request.request_id, merchant=merchant)
        return order_service_pb2.UpdateOrderStatusResponse(order=_as_seen_by(merchant, order))

    async def WatchOrder(self, request: Any, context: Any) -> AsyncIterator[Any]:
        async for order in self.service.watch(request.order_id, request.user_id):
            yield order_service_pb2.WatchOrderResponse(order=order_to_proto(order))
