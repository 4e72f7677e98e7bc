"""grpc.aio servicer of miandan.catalog.v1.CatalogService: proto <-> model, nothing else."""
from __future__ import annotations

from typing import Any, AsyncIterator

from miandan.catalog.v1 import catalog_pb2, catalog_service_pb2, catalog_service_pb2_grpc

from services.common.auth import AccessPolicy
from services.common.errors import InvalidArgument, Unavailable

from . import model
from .changes import LAGGING, SubscriptionEnded
from .handlers import Catalog, Proposal, StoreHit
from .model import Brand, MenuItem, Option, OptionGroup, StoreDetails, StoreRecord, StoreRow, WantedLine, validate_store_row

pb = catalog_pb2
svc = catalog_service_pb2

# A reader that hears nothing for three of these treats its connection as dead.
WATCH_HEARTBEAT_SECONDS = 5.0


# --- proto -> model --------------------------------------------------------------------------


def brand_from_pb(b: catalog_pb2.Brand) -> Brand:
    return Brand(b.brand_id, b.name, tuple(b.aliases), b.category, b.logo_url)


def item_from_pb(i: catalog_pb2.MenuItem) -> MenuItem:
    return MenuItem(
        i.item_id,
        i.brand_id,
        i.name,
        i.price_fen,
        tuple(i.aliases),
        i.category,
        tuple(
            OptionGroup(
                g.group_id,
                g.name,
                tuple(Option(o.option_id, o.name, o.price_delta_fen, tuple(o.aliases)) for o in g.options),
                g.default_option_id,
            )
            for g in i.option_groups
        ),
    )


def store_row_from_pb(row_index: int, s: catalog_pb2.Store, brands: Any) -> StoreRow | model.Rejection:
    return validate_store_row(
        row_index,
        s.store_id,
        s.brand_id,
        s.name,
        s.address,
        s.city,
        s.location.latitude if s.HasField("location") else 0.0,
        s.location.longitude if s.HasField("location") else 0.0,
        tuple([(p.weekday, p.open_minute, p.close_minute) for p in s.opening_hours]),
        s.closed,
        s.time_zone,
        brands,
    )


def lines_from_pb(lines: Any) -> list[WantedLine]:
    out = []
    for index, line in enumerate(lines):
        options: dict[str, str] = {}
        for choice in line.options:
            if options.get(choice.group_id, choice.option_id) != choice.option_id:
                raise InvalidArgument(
                    f"lines[{index}].options", f"选项组 {choice.group_id!r} 选了多次 / group {choice.group_id!r} chosen twice"
                )
            options[choice.group_id] = choice.option_id
        out.append(WantedLine(line.item_id, line.quantity, options))
    return out


# --- model -> proto --------------------------------------------------------------------------


def brand_pb(b: Brand) -> catalog_pb2.Brand:
    return pb.Brand(brand_id=b.brand_id, name=b.name, aliases=b.aliases, category=b.category, logo_url=b.logo_url)


def item_pb(i: MenuItem) -> catalog_pb2.MenuItem:
    return pb.MenuItem(
        item_id=i.item_id,
        brand_id=i.brand_id,
        name=i.name,
        aliases=i.aliases,
        category=i.category,
        price_fen=i.price_fen,
        option_groups=[
            pb.OptionGroup(
                group_id=g.group_id,
                name=g.name,
                default_option_id=g.default.option_id,
                options=[pb.Option(option_id=o.option_id, name=o.name, price_delta_fen=o.price_delta_fen, aliases=o.aliases) for o in g.options],
            )
            for g in i.option_groups
        ],
    )


def store_pb(s: StoreRecord, d: StoreDetails) -> catalog_pb2.Store:
    out = pb.Store(
        store_id=s.store_id,
        brand_id=s.brand_id,
        name=s.name,
        address=d.address,
        city=d.city,
        opening_hours=[pb.OpeningPeriod(weekday=p.weekday, open_minute=p.open_minute, close_minute=p.close_minute) for p in s.hours],
        closed=s.closed,
        time_zone=s.time_zone,
    )
    out.location.latitude = s.lat
    out.location.longitude = s.lng
    return out


def hit_pb(h: StoreHit) -> catalog_pb2.StoreHit:
    return pb.StoreHit(store=store_pb(h.store, h.details), brand=brand_pb(h.brand), distance_meters=h.distance_m, open_now=h.open_now)


def quote_pb(q: model.QuoteResult) -> catalog_pb2.Quote:
    out = pb.Quote(
        store_id=q.store_id,
        brand_id=q.brand_id,
        store_name=q.store_name,
        total_fen=q.total_fen,
        lines=[
            pb.QuotedLine(
                line_index=l.line_index,
                item_id=l.item_id,
                item_name=l.item_name,
                quantity=l.quantity,
                unit_price_fen=l.unit_price_fen,
                line_total_fen=l.line_total_fen,
                options=[pb.PricedOption(group_id=o.group_id, option_id=o.option_id, name=o.name, price_delta_fen=o.price_delta_fen) for o in l.options],
            )
            for l in q.lines
        ],
    )
    out.quote_time.FromDatetime(q.quote_time)
    return out


def proposal_pb(p: Proposal) -> catalog_pb2.OrderProposal:
    return pb.OrderProposal(
        brand=brand_pb(p.brand),
        store=hit_pb(p.hit),
        lines=[
            pb.LineSelection(
                item_id=l.item_id,
                quantity=l.quantity,
                options=[pb.OptionChoice(group_id=g, option_id=o) for g, o in sorted(l.options.items())],
            )
            for l in p.lines
        ],
        quote=quote_pb(p.quote),
        card_covered_fen=p.card_covered_fen,
        payable_with_card_fen=p.payable_with_card_fen,
        confidence=p.confidence,
        explanation=p.explanation,
    )


# --- the servicer ----------------------------------------------------------------------------


class CatalogServicer(catalog_service_pb2_grpc.CatalogServiceServicer):
    def __init__(self, catalog: Catalog, policy: AccessPolicy) -> None:
        self.catalog = catalog
        self.policy = policy

    async def ImportStores(self, request_iterator: AsyncIterator[svc.ImportStoresRequest], context: Any) -> svc.ImportStoresResponse:
        session = self.catalog.begin_import()
        async for message in request_iterator:
            # The session enforces the per-message row limit and paces the validation.
            await session.add_message(message.stores, lambda index, s: store_row_from_pb(index, s, session.known_brands))
        r = await session.finish()
        return svc.ImportStoresResponse(
            accepted=r.accepted,
            rejected=r.rejected,
            rejections=[
                svc.RejectedStore(row_index=x.row_index, store_id=x.store_id, reason=x.reason, message=x.message) for x in r.rejections
            ],
        )

    async def UpsertBrand(self, request: svc.UpsertBrandRequest, context: Any) -> svc.UpsertBrandResponse:
        brand, created = await self.catalog.upsert_brand(request.request_id, brand_from_pb(request.brand))
        return svc.UpsertBrandResponse(brand=brand_pb(brand), created=created)

    async def UpsertMenuItem(self, request: svc.UpsertMenuItemRequest, context: Any) -> svc.UpsertMenuItemResponse:
        item, created = await self.catalog.upsert_item(request.request_id, item_from_pb(request.item))
        return svc.UpsertMenuItemResponse(item=item_pb(item), created=created)

    async def ListBrands(self, request: svc.ListBrandsRequest, context: Any) -> svc.ListBrandsResponse:
        brands, token = self.catalog.list_brands(request.category, request.page_size, request.page_token)
        return svc.ListBrandsResponse(brands=[brand_pb(b) for b in brands], next_page_token=token)

    async def SearchStores(self, request: svc.SearchStoresRequest, context: Any) -> svc.SearchStoresResponse:
        hits, token = await self.catalog.search_stores(
            request.location.latitude,
            request.location.longitude,
            location_present=request.HasField("location"),
            radius_m=request.radius_meters,
            brand_id=request.brand_id,
            category=request.category,
            open_now=request.open_now,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return svc.SearchStoresResponse(stores=[hit_pb(h) for h in hits], next_page_token=token)

    async def GetMenu(self, request: svc.GetMenuRequest, context: Any) -> svc.GetMenuResponse:
        view = await self.catalog.get_menu(request.store_id)
        return svc.GetMenuResponse(
            store=store_pb(view.store, view.details),
            brand=brand_pb(view.brand),
            entries=[pb.MenuEntry(item=item_pb(it), available=ok) for it, ok in view.entries],
            open_now=view.open_now,
        )

    async def GetStore(self, request: svc.GetStoreRequest, context: Any) -> svc.GetStoreResponse:
        return svc.GetStoreResponse(store=store_pb(*await self.catalog.get_store(request.store_id)))

    async def SetItemAvailability(self, request: svc.SetItemAvailabilityRequest, context: Any) -> svc.SetItemAvailabilityResponse:
        available = await self.catalog.set_availability(
            request.request_id, request.store_id, request.item_id, request.available,
            merchant=self.policy.merchant_scope(context.invocation_metadata()),
        )
        return svc.SetItemAvailabilityResponse(store_id=request.store_id, item_id=request.item_id, available=available)

    async def Quote(self, request: svc.QuoteRequest, context: Any) -> svc.QuoteResponse:
        stamped = self.catalog.quote_stamped(request.store_id, lines_from_pb(request.lines))
        result = stamped.result
        out = svc.QuoteResponse(
            quote=quote_pb(result),
            problems=[pb.QuoteProblem(line_index=p.line_index, item_id=p.item_id, reason=p.reason, message=p.message) for p in result.problems],
            orderable=result.orderable,
            epoch=stamped.epoch,
            menu_version=stamped.menu_version,
        )
        if stamped.valid_until is not None:
            out.valid_until_time.FromDatetime(stamped.valid_until)
        return out

    async def WatchMenuChanges(self, request: svc.WatchMenuChangesRequest, context: Any) -> AsyncIterator[svc.WatchMenuChangesResponse]:
        sub = self.catalog.changes.subscribe()
        try:
            yield svc.WatchMenuChangesResponse(epoch=sub.epoch, version=sub.start_version, hello=True)
            while True:
                try:
                    change = await sub.next(WATCH_HEARTBEAT_SECONDS)
                except SubscriptionEnded as ended:
                    if ended.reason == LAGGING:
                        raise Unavailable(
                            "CHANGE_FEED_LAGGING",
                            "订阅者处理变更过慢，请重新订阅 / the subscriber fell behind the change feed; reconnect",
                            retry_after_ms=100,
                        ) from None
                    return  # the catalog is shutting down
                if change is None:
                    # Idle heartbeat: lets the reader tell a quiet feed from a dead connection.
                    yield svc.WatchMenuChangesResponse(epoch=sub.epoch, version=sub.last_version)
                else:
                    yield svc.WatchMenuChangesResponse(
                        epoch=sub.epoch, version=change.version, store_ids=change.store_ids, all_stores=change.all_stores
                    )
        finally:
            sub.close()

    async def MatchIntent(self, request: svc.MatchIntentRequest, context: Any) -> svc.MatchIntentResponse:
        outcome = await self.catalog.match_intent(
            request.text,
            request.location.latitude,
            request.location.longitude,
            location_present=request.HasField("location"),
            card_face_value_fen=request.card_face_value_fen,
            max_alternatives=request.max_alternatives,
        )
        if not outcome.matched:
            return svc.MatchIntentResponse(
                status=pb.INTENT_STATUS_NEEDS_CLARIFICATION,
                clarification=outcome.clarification,
                available_brands=outcome.available_brands,
            )
        best, *others = outcome.proposals
        return svc.MatchIntentResponse(
            status=pb.INTENT_STATUS_MATCHED,
            proposal=proposal_pb(best),
            alternatives=[proposal_pb(p) for p in others],
            confidence=best.confidence,
        )
