"""Bad input gets INVALID_ARGUMENT naming the field, or NOT_FOUND with a reason — never INTERNAL."""
import base64

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from miandan.card.v1 import card_pb2, card_service_pb2 as pb
from services.common.errors import error_details

C = "spring"


async def rejected(call, code, field=None, reason=None):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    d = error_details(err.value)
    assert err.value.code() == code, d
    if field is not None:
        assert field in [f for f, _ in d["violations"]], d
    if reason is not None:
        assert d["reason"] == reason, d
    return d


@pytest.fixture
async def ready(card):
    await card.campaign(C)
    await card.ClaimSignupCard(campaign_id=C, user_id="alice")
    return card


INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "rpc, fields, field",
    [
        ("ClaimSignupCard", dict(campaign_id=C, user_id=""), "user_id"),
        ("ClaimSignupCard", dict(campaign_id="", user_id="bob"), "campaign_id"),
        ("ClaimSignupCard", dict(campaign_id=C, user_id="😀"), "user_id"),
        ("ClaimSignupCard", dict(campaign_id=C, user_id="u" * 500), "user_id"),
        ("ClaimSignupCard", dict(campaign_id="🎉", user_id="bob"), "campaign_id"),
        ("ClaimSignupCard", dict(request_id="a b", campaign_id=C, user_id="bob"), "request_id"),
        ("GetInviteCode", dict(campaign_id=C, user_id=""), "user_id"),
        ("AcceptInvite", dict(campaign_id=C, invitee_user_id="bob", text=""), "text"),
        ("AcceptInvite", dict(campaign_id=C, invitee_user_id="bob", text="🎉🧧🎉 恭喜发财"), "text"),
        ("AcceptInvite", dict(campaign_id=C, invitee_user_id="bob", text="\x00\x01garbage"), "text"),
        ("AcceptInvite", dict(campaign_id=C, invitee_user_id="", text="ABCDEFGH"), "invitee_user_id"),
        ("ReserveCard", dict(campaign_id=C, user_id="alice", order_id="o", amount_fen=-100), "amount_fen"),
        ("ReserveCard", dict(campaign_id=C, user_id="alice", order_id="o", amount_fen=0), "amount_fen"),
        ("ReserveCard", dict(campaign_id=C, user_id="alice", order_id="", amount_fen=100), "order_id"),
        ("ReserveCard", dict(campaign_id=C, user_id="alice", order_id="o", amount_fen=100, ttl_seconds=-5), "ttl_seconds"),
        # A hold of more than a day: the proto's 0..86,400.
        ("ReserveCard", dict(campaign_id=C, user_id="alice", order_id="o", amount_fen=100, ttl_seconds=86_401), "ttl_seconds"),
        ("ConfirmReservation", dict(order_id=""), "order_id"),
        ("ReleaseReservation", dict(order_id=""), "order_id"),
        ("RefundCard", dict(order_id="订单"), "order_id"),
        ("ListCards", dict(campaign_id=C, user_id="alice", page_size=-1), "page_size"),
        ("ListCards", dict(campaign_id=C, user_id="alice", page_size=1000), "page_size"),
        ("ListCards", dict(campaign_id=C, user_id="alice", page_token="!!not-a-token!!"), "page_token"),
        ("ListCards", dict(campaign_id=C, user_id="alice", state=99), "state"),
        ("GetInviteStats", dict(campaign_id=C, user_id="alice", page_token="garbage"), "page_token"),
        ("ListCampaigns", dict(page_size=-1), "page_size"),
        ("ListCampaignCards", dict(campaign_id=C, page_size=5000), "page_size"),
        # Characters outside base64url were dropped by the lenient decoder: "!!" read as no token,
        # and the caller silently got the first page again.
        ("ListCampaigns", dict(page_token="!!"), "page_token"),
        ("ListCampaignCards", dict(campaign_id=C, page_token="!!"), "page_token"),
        ("ListCampaignCards", dict(campaign_id=C, page_token="YW!!Jj"), "page_token"),
        ("GetCardHistory", dict(card_id=""), "card_id"),
    ],
)
async def test_bad_fields_are_invalid_argument_naming_the_field(ready, rpc, fields, field):
    await rejected(getattr(ready, rpc)(**fields), INVALID, field)


def _token(*parts: str) -> str:
    """A token of this service's shape: urlsafe base64, padding stripped, of the parts joined by U+001F."""
    return base64.urlsafe_b64encode("\x1f".join(parts).encode()).decode().rstrip("=")


@pytest.mark.parametrize("rpc", ["ListCards", "GetInviteStats"])
@pytest.mark.parametrize("token", [
    "garbage",
    "!!not-a-token!!",
    _token("1769603400000"),  # one part where two are due
    _token("soon", "x"),
    # Numbers str.isdigit() accepts but int() refuses (ValueError), one int() reads though it is
    # not ASCII, and one SQLite cannot bind (OverflowError): INTERNAL until tokens took ASCII
    # digits within 64 bits only.
    _token("²", "x"),
    _token("①", "x"),
    _token("١٧٦٩", "x"),
    _token("１７６９", "x"),
    _token("9" * 25, "x"),
    _token("9223372036854775808", "x"),
])
async def test_a_page_token_not_issued_by_the_service_is_invalid_page_token(ready, rpc, token):
    d = await rejected(getattr(ready, rpc)(campaign_id=C, user_id="alice", page_token=token), INVALID, "page_token",
                       reason="INVALID_PAGE_TOKEN")
    assert d["code"] == "INVALID_ARGUMENT"


async def test_an_invite_stats_token_has_no_negative_time(ready):
    await rejected(ready.GetInviteStats(campaign_id=C, user_id="alice", page_token=_token("-5", "x")), INVALID,
                   "page_token", reason="INVALID_PAGE_TOKEN")


# Outside google.protobuf.Timestamp's range (0001-01-01 .. 9999-12-31, nanos 0..999,999,999): the
# milliseconds of the first overflowed SQLite's integer (INTERNAL); the others were taken as times.
OUT_OF_RANGE = [
    Timestamp(seconds=2**63 - 1),
    Timestamp(seconds=253_402_300_800),
    Timestamp(seconds=-62_135_596_801),
    Timestamp(seconds=1_700_000_000, nanos=-1),
    Timestamp(seconds=1_700_000_000, nanos=1_000_000_000),
]


@pytest.mark.parametrize("bad", OUT_OF_RANGE)
@pytest.mark.parametrize("field", ["start_time", "end_time"])
async def test_a_campaign_time_outside_the_timestamp_range_is_invalid_timestamp(card, field, bad):
    fields = dict(campaign_id="c1", name="n", start_time=Timestamp(seconds=1_700_000_000),
                  end_time=Timestamp(seconds=1_800_000_000), rules=card_pb2.CampaignRules(budget_fen=10**6))
    fields[field] = bad
    await rejected(card.CreateCampaign(pb.CreateCampaignRequest(**fields)), INVALID, field, reason="INVALID_TIMESTAMP")


@pytest.mark.parametrize("bad", OUT_OF_RANGE)
async def test_an_invite_stats_before_time_outside_the_timestamp_range_is_invalid_timestamp(ready, bad):
    await rejected(ready.GetInviteStats(campaign_id=C, user_id="alice", before_time=bad), INVALID, "before_time",
                   reason="INVALID_TIMESTAMP")


@pytest.mark.parametrize("edge", [Timestamp(seconds=253_402_300_799, nanos=999_999_999), Timestamp(seconds=-62_135_596_800)])
async def test_the_timestamp_range_edges_are_accepted_as_before_time(ready, edge):
    stats = await ready.GetInviteStats(campaign_id=C, user_id="alice", before_time=edge)
    assert not stats.next_page_token


async def test_a_megabyte_of_garbage_pass_phrase_is_refused_as_invalid_text(ready):
    await rejected(ready.AcceptInvite(campaign_id=C, invitee_user_id="bob", text="口令" * 350_000), INVALID, "text")


@pytest.mark.parametrize("rpc, fields", [
    ("GetCampaign", dict(campaign_id="nope")),
    ("ClaimSignupCard", dict(campaign_id="nope", user_id="bob")),
    ("GetWallet", dict(campaign_id="nope", user_id="bob")),
    ("GetBudget", dict(campaign_id="nope")),
    ("ReserveCard", dict(campaign_id="nope", user_id="bob", order_id="o", amount_fen=1)),
    ("AcceptInvite", dict(campaign_id="nope", invitee_user_id="bob", text="ABCDEFGHJ")),
])
async def test_an_unknown_campaign_is_not_found(ready, rpc, fields):
    from services.card import invite_code as codes
    if rpc == "AcceptInvite":
        fields["text"] = codes.code_for(b"k", "x")
    await rejected(getattr(ready, rpc)(**fields), grpc.StatusCode.NOT_FOUND, reason="CAMPAIGN_NOT_FOUND")


async def test_unknown_orders_and_cards_are_not_found(ready):
    await rejected(ready.ConfirmReservation(order_id="none"), grpc.StatusCode.NOT_FOUND, reason="RESERVATION_NOT_FOUND")
    await rejected(ready.RefundCard(order_id="none"), grpc.StatusCode.NOT_FOUND, reason="RESERVATION_NOT_FOUND")
    await rejected(ready.GetCardHistory(card_id="cd00"), grpc.StatusCode.NOT_FOUND, reason="CARD_NOT_FOUND")


@pytest.mark.parametrize("change, field", [
    (dict(campaign_id="has space"), "campaign_id"),
    (dict(name=""), "name"),
    (dict(rules=card_pb2.CampaignRules()), "rules.budget_fen"),
    (dict(rules=card_pb2.CampaignRules(budget_fen=10**6, per_user_card_cap=-1)), "rules.per_user_card_cap"),
    (dict(rules=card_pb2.CampaignRules(budget_fen=10**6, card_face_value_fen=-2500)), "rules.card_face_value_fen"),
    (dict(rules=card_pb2.CampaignRules(budget_fen=10**6, signup_grant=5, per_user_card_cap=3)), "rules.per_user_card_cap"),
    (dict(rules=card_pb2.CampaignRules(budget_fen=10**6, time_zone="🕐")), "rules.time_zone"),
    (dict(end_time=None), "end_time"),
])
async def test_bad_campaigns_are_refused_naming_the_field(card, change, field):
    from google.protobuf import timestamp_pb2
    start, end = timestamp_pb2.Timestamp(seconds=1_700_000_000), timestamp_pb2.Timestamp(seconds=1_800_000_000)
    fields = dict(campaign_id="c1", name="n", start_time=start, end_time=end, rules=card_pb2.CampaignRules(budget_fen=10**6))
    fields.update(change)
    fields = {k: v for k, v in fields.items() if v is not None}
    await rejected(card.CreateCampaign(pb.CreateCampaignRequest(**fields)), INVALID, field)


async def test_a_campaign_ending_before_it_starts_is_refused(card):
    from google.protobuf import timestamp_pb2
    await rejected(card.CreateCampaign(
        campaign_id="c1", name="n", start_time=timestamp_pb2.Timestamp(seconds=2_000_000_000),
        end_time=timestamp_pb2.Timestamp(seconds=1_000_000_000), rules=card_pb2.CampaignRules(budget_fen=10**6),
    ), INVALID, "end_time")


async def test_calls_without_the_internal_credential_are_unauthenticated(card):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await card.stub.GetCampaign(pb.GetCampaignRequest(campaign_id=C))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
