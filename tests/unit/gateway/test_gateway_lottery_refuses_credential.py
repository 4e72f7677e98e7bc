"""A lottery that refuses the gateway's own credential (MIANDAN_INTERNAL_TOKEN rotated on the
lottery before the gateway) is, for a wallet, a lottery that cannot be asked: the wallet is
still shown, without today's lottery standing, as when the lottery is down. Without this the
whole Join / GetWallet failed for every user until the rotation reached the gateway."""
from __future__ import annotations

import pytest

from services.common.auth import CREDENTIAL_INVALID
from services.common.errors import PermissionDenied


@pytest.mark.parametrize("method", ["GetDraw", "ListMyEntries"])
async def test_a_wallet_is_shown_without_lottery_standing_when_the_lottery_refuses_our_credential(fakes, make_rpc_error, method):
    fakes.card.invites["alice"] = 3  # qualified: its entry is read after the draw
    fakes.lottery.fail[method] = make_rpc_error(CREDENTIAL_INVALID)
    view = await fakes.gateway.wallet_view("alice", fakes.options())
    assert view.lottery.day == "2026-01-28" and not view.lottery.entered_today
    assert view.lottery.standing_unknown  # for the entries read (ListMyEntries) as for the draw


async def test_the_lottery_refusing_the_users_request_itself_still_fails_the_wallet(fakes, make_rpc_error):
    # Not every PERMISSION_DENIED is about our credential: one with a reason of the request's
    # own is the lottery's word about it and is not papered over.
    import grpc

    fakes.lottery.fail["GetDraw"] = make_rpc_error(PermissionDenied("NOT_YOURS", "not yours"))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await fakes.gateway.wallet_view("alice", fakes.options())
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
