"""Independent checker of a drawn day ("miandan-draw-hmac-sha256" v1, see lottery.proto).

    python -m services.lottery.verify --file result.json
    python -m services.lottery.verify --target 127.0.0.1:50054 --campaign spring-2026 --day 2026-01-28 [--dump result.json]
    python -m services.lottery.verify --gateway 127.0.0.1:50050 --day 2026-01-28 [--dump result.json]

--file reads the JSON of a VerifyDrawResponse with every page of entrants concatenated into
"entrants" (what --dump writes; protobuf JSON, field names as in the .proto or lowerCamelCase),
bare as the lottery service answers it or inside the gateway's {"verification": ...}.
Live mode pages VerifyDraw: --target asks the lottery service with the internal credential from
MIANDAN_INTERNAL_TOKEN; --gateway asks the public gateway as an end user, with the bearer token
from MIANDAN_USER_TOKEN (any user's), for the gateway's campaign. A page refused with a wait to
keep to (RetryInfo: the gateway paces each user, so a day of more than ~200,000 entrants runs
into it part-way) is asked again after that wait, for at most --max-wait seconds in all.

This file deliberately re-implements the algorithm from its published description with the
standard library only and imports nothing from the service, so it checks the service instead
of agreeing with it. Exit status: 0 every check passed, 1 a check failed, 2 could not check.
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import itertools
import json
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable

ALGORITHM = "miandan-draw-hmac-sha256"
VERSION = 1
MAX_WAIT_SECONDS = 300.0
# Each wait counts for at least this much: a server answering "retry in 0 s" forever must
# still run out the budget instead of keeping the tool asking.
MIN_WAIT_SECONDS = 0.05


class FetchError(Exception):
    """A live fetch that did not get every page; the message is one line for the operator."""


def _get(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """protobuf JSON may use proto names or lowerCamelCase."""
    if name in obj:
        return obj[name]
    parts = name.split("_")
    camel = parts[0] + "".join(p.title() for p in parts[1:])
    return obj.get(camel, default)


def _draw_of(result: dict[str, Any]) -> dict[str, Any]:
    draw = _get(result, "draw", {}) or {}
    if not isinstance(draw, dict):
        raise ValueError("draw is not an object")
    return draw


def _rfc3339(value: Any) -> datetime | None:
    if not value:
        return None
    text = str(value)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    # Python < 3.11 cannot parse more than 6 fractional digits; protobuf may emit 9.
    if "." in text:
        head, _, rest = text.partition(".")
        digits = "".join(itertools.takewhile(str.isdigit, rest))
        tz = rest[len(digits):]
        text = f"{head}.{digits[:6]}{tz}"
    parsed = datetime.fromisoformat(text)
    # A timestamp without an offset would compare wrong (or not at all); protobuf JSON is UTC.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _rank(key: bytes, ids: list[str], count: int) -> list[str]:
    scored = []
    for uid in ids:
        raw = uid.encode("utf-8")
        digest = hmac.new(key, raw, hashlib.sha256).digest()
        scored.append((digest, raw, uid))  # big-endian unsigned compare == byte-wise compare of equal-length digests
    scored.sort()
    return [uid for _, _, uid in scored[:count]]


def check(result: dict[str, Any], *, day: str = "", campaign_id: str = "") -> list[tuple[bool, str]]:
    """Every check as (passed, human line). day, campaign_id: what a live check asked for (the
    gateway's campaign is not named by its caller): another day's draw, however honest, says
    nothing about the winners of the day asked."""
    out: list[tuple[bool, str]] = []
    draw = _draw_of(result)
    for name, asked in (("day", day), ("campaign_id", campaign_id)):
        if asked:
            got = str(_get(draw, name, "") or "")
            out.append((got == asked, f"the draw's {name} {got!r} is the one asked, {asked!r}"))

    algorithm, version = _get(result, "algorithm", ""), int(_get(result, "algorithm_version", 0) or 0)
    known = algorithm == ALGORITHM and version == VERSION
    out.append((known, f"algorithm {algorithm!r} v{version} is {ALGORITHM} v{VERSION}"))
    if not known:
        return out

    seed_hex = str(_get(result, "seed", "") or "")
    try:
        seed = bytes.fromhex(seed_hex)
        seed_ok = len(seed) == 32
    except ValueError:
        seed, seed_ok = b"", False
    out.append((seed_ok, "seed is 32 bytes of hex"))
    if not seed_ok:
        return out

    commitment = str(_get(result, "commitment", "") or "")
    published = str(_get(draw, "commitment", commitment) or "")
    recomputed = hashlib.sha256(seed).hexdigest()
    out.append((recomputed == commitment.lower() and recomputed == published.lower(),
                f"SHA-256(seed) = {recomputed} matches the published commitment {published or commitment}"))

    commit_t, cutoff_t, draw_t = (_rfc3339(_get(draw, k)) for k in ("commit_time", "cutoff_time", "draw_time"))
    if commit_t and cutoff_t and draw_t:
        out.append((commit_t < cutoff_t <= draw_t, f"committed {commit_t.isoformat()} < cut-off {cutoff_t.isoformat()} <= drawn {draw_t.isoformat()}"))
    else:
        out.append((False, "commit_time, cutoff_time and draw_time are all present"))

    entrants = [str(e) for e in (_get(result, "entrants", []) or [])]
    encoded = [e.encode("utf-8") for e in entrants]
    ordered = all(a < b for a, b in zip(encoded, encoded[1:]))
    out.append((ordered, f"{len(entrants)} entrants strictly ascending by UTF-8 bytes (sorted, no duplicates)"))
    clean = not any(any(ord(c) < 32 or ord(c) == 127 for c in e) for e in entrants)
    out.append((clean, "no entrant id contains a control character"))
    count = int(_get(result, "entrant_count", 0) or 0)
    out.append((count == len(entrants), f"entrant_count {count} equals the entrants listed ({len(entrants)})"))
    listed_hash = str(_get(result, "entrants_hash", "") or "")
    entrants_digest = hashlib.sha256(b"\n".join(encoded)).hexdigest()
    draw_hash = str(_get(draw, "entrants_hash", listed_hash) or listed_hash)
    out.append((entrants_digest == listed_hash.lower() == draw_hash.lower(),
                f"SHA-256 of the entrant list = {entrants_digest} matches entrants_hash {listed_hash}"))

    beacon_value = str(_get(result, "beacon_value", "") or "")
    configured = bool(_get(result, "beacon_configured", False))
    source, round_ = str(_get(draw, "beacon_source", "") or ""), str(_get(draw, "beacon_round", "") or "")
    if configured or source:
        out.append((bool(beacon_value) and bool(source) and configured,
                    f"beacon {source} round {round_} was committed and its value {beacon_value[:24]!r}... was used "
                    "(check that value against the beacon's own record)"))
    else:
        out.append((not beacon_value, "no beacon was committed and none was used"))
    if str(_get(draw, "beacon_value", beacon_value) or "") != beacon_value:
        out.append((False, "the draw's beacon_value equals the response's beacon_value"))

    try:
        winner_count = int(_get(draw, "winner_count", 0) or 0)
    except (TypeError, ValueError):
        winner_count = 0
    out.append((winner_count > 0, f"winner_count {winner_count} is positive"))
    expected = _rank(seed + beacon_value.encode("utf-8"), entrants, winner_count)
    winners = [str(w) for w in (_get(result, "winners", []) or [])]
    out.append((winners == expected, f"winners recomputed ({len(expected)}) equal the published winners ({len(winners)})"))
    draw_winners = [str(w) for w in (_get(draw, "winners", winners) or [])]
    out.append((draw_winners == winners, "the draw's winner list equals the response's"))
    return out


def report(result: dict[str, Any], stream: Any = None, *, day: str = "", campaign_id: str = "") -> bool:
    stream = stream or sys.stdout
    checks = check(result, day=day, campaign_id=campaign_id)
    for ok, line in checks:
        print(("PASS  " if ok else "FAIL  ") + line, file=stream)
    note = _get(result, "note", "")
    if note:
        print(f"note: {note}", file=stream)
    passed = all(ok for ok, _ in checks)
    draw = _draw_of(result)
    label = f"{_get(draw, 'campaign_id', '?')} {_get(draw, 'day', '?')}"
    print(f"VERDICT {label}: " + ("VERIFIED - the published winners follow from the committed seed" if passed else "NOT VERIFIED"), file=stream)
    return passed


def _result_in_file(document: Any) -> dict[str, Any]:
    """The lottery's VerifyDraw result a --file holds: as --dump writes it, or wrapped in the
    gateway's VerifyDraw response ({"verification": ...}, what a user who asks the public API with
    grpcurl saves), which would otherwise read as an unknown algorithm, i.e. NOT VERIFIED."""
    if not isinstance(document, dict):
        raise ValueError("the JSON must be an object")
    inner = document.get("verification")
    result = inner if isinstance(inner, dict) and "algorithm" not in document else document
    listed, announced = _get(result, "entrants", []) or [], _get(result, "entrant_count", 0) or 0
    if _get(result, "next_page_token", "") and isinstance(listed, list) and len(listed) < int(announced):
        # One page of a longer entrant list: the recomputation needs every entrant.
        raise ValueError("the file holds one page of entrants (next_page_token is set); fetch all pages, e.g. with --dump")
    return result


def _refusal(error: Any) -> str:
    """One line naming a failed call: its status, its reason (ErrorInfo) and its message."""
    from google.rpc import error_details_pb2

    code = getattr(error.code(), "name", "UNKNOWN") if callable(getattr(error, "code", None)) else "UNKNOWN"
    details = error.details() if callable(getattr(error, "details", None)) else str(error)
    reason = ""
    for detail in _status_details(error):
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
    label = f"{code} {reason}" if reason and reason != code else code
    return " ".join(f"VerifyDraw failed: {label}: {details or ''}".split())


def _status_details(error: Any) -> list[Any]:
    from google.rpc import status_pb2

    trailing = error.trailing_metadata() if callable(getattr(error, "trailing_metadata", None)) else None
    for key, value in trailing or ():
        if key == "grpc-status-details-bin":
            try:
                return list(status_pb2.Status.FromString(value).details)
            except Exception:  # a garbled trailer is no wait to keep to
                return []
    return []


def _retry_delay(error: Any) -> float | None:
    """Seconds a refusal for pace or load (RESOURCE_EXHAUSTED, UNAVAILABLE) asks the caller to
    wait (google.rpc.RetryInfo); None for any other error, which waiting would not mend."""
    import grpc
    from google.rpc import error_details_pb2

    if error.code() not in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
        return None
    for detail in _status_details(error):
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            return max(retry.retry_delay.ToMilliseconds(), 0) / 1000
    return None


def fetch(
    target: str, campaign: str, day: str, token: str, timeout: float = 10.0, *, via_gateway: bool = False,
    max_wait: float = MAX_WAIT_SECONDS, sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """All pages of VerifyDraw as one JSON-ready dict (grpc imported only here). via_gateway:
    `target` is the gateway and `token` an end user's bearer token (campaign unused). A page
    refused with a RetryInfo wait is asked again after it, `max_wait` seconds in all; FetchError
    when a call fails otherwise or the waits would run past that."""
    import grpc
    from google.protobuf import json_format

    from miandan.gateway.v1 import gateway_service_pb2, gateway_service_pb2_grpc
    from miandan.lottery.v1 import lottery_service_pb2, lottery_service_pb2_grpc

    with grpc.insecure_channel(target) as channel:
        if via_gateway:
            gateway = gateway_service_pb2_grpc.GatewayServiceStub(channel)
            metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),)

            def page_of(page_token: str) -> Any:
                request = gateway_service_pb2.VerifyDrawRequest(day=day, page_size=10_000, page_token=page_token)
                return gateway.VerifyDraw(request, metadata=metadata, timeout=timeout).verification
        else:
            lottery = lottery_service_pb2_grpc.LotteryServiceStub(channel)
            metadata = (("x-miandan-internal-token", token),)

            def page_of(page_token: str) -> Any:
                request = lottery_service_pb2.VerifyDrawRequest(campaign_id=campaign, day=day, page_size=10_000, page_token=page_token)
                return lottery.VerifyDraw(request, metadata=metadata, timeout=timeout)

        entrants: list[str] = []
        page_token = ""
        first = None
        waited = 0.0
        while True:
            try:
                resp = page_of(page_token)
            except grpc.RpcError as exc:
                delay = _retry_delay(exc)
                if delay is None:
                    raise FetchError(_refusal(exc)) from None
                delay = max(delay, MIN_WAIT_SECONDS)
                if waited + delay > max_wait:
                    raise FetchError(
                        f"{_refusal(exc)} (gave up: {waited:.1f} s waited in all, at most {max_wait:g} s; see --max-wait)"
                    ) from None
                sleep(delay)
                waited += delay
                continue  # the same page again
            first = first or resp
            entrants.extend(resp.entrants)
            page_token = resp.next_page_token
            if not page_token:
                break
    assert first is not None
    out = json_format.MessageToDict(first, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    out["entrants"] = entrants
    out.pop("next_page_token", None)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.lottery.verify", description=__doc__.split("\n\n")[0])
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", help="JSON of a VerifyDraw response with all entrants ('-' for stdin)")
    src.add_argument("--target", help="host:port of the lottery service (live, internal credential)")
    src.add_argument("--gateway", help="host:port of the gateway (live, as an end user: MIANDAN_USER_TOKEN)")
    parser.add_argument("--campaign", help="campaign id (live)")
    parser.add_argument("--day", help="YYYY-MM-DD (live)")
    parser.add_argument("--dump", help="also write the fetched result as JSON to this file (live)")
    parser.add_argument(
        "--max-wait", type=float, default=MAX_WAIT_SECONDS,
        help=f"seconds to wait in all for pages refused with a retry delay, e.g. the gateway's pace per user (live; default {MAX_WAIT_SECONDS:g})",
    )
    args = parser.parse_args(argv)
    try:
        if args.file:
            text = sys.stdin.read() if args.file == "-" else open(args.file, encoding="utf-8").read()
            result = _result_in_file(json.loads(text))
        else:
            if args.gateway:
                if not args.day:
                    parser.error("--gateway needs --day")
                token = os.environ.get("MIANDAN_USER_TOKEN", "")
                if not token:
                    parser.error("--gateway needs an end user's bearer token in MIANDAN_USER_TOKEN")
                result = fetch(args.gateway, "", args.day, token, via_gateway=True, max_wait=args.max_wait)
            else:
                if not args.campaign or not args.day:
                    parser.error("--target needs --campaign and --day")
                token = os.environ.get("MIANDAN_INTERNAL_TOKEN", "dev-internal-token")
                result = fetch(args.target, args.campaign, args.day, token, max_wait=args.max_wait)
            if args.dump:
                with open(args.dump, "w", encoding="utf-8") as f:
                    json.dump(result, f, ensure_ascii=False, indent=2)
    except (OSError, ValueError, FetchError) as exc:
        print(f"cannot check: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # grpc.RpcError and friends: the draw could not be fetched
        details = getattr(exc, "details", None)
        print(f"cannot check: {details() if callable(details) else exc}", file=sys.stderr)
        return 2
    try:
        # Live, the answer must be of the day (and campaign) asked; a --file names its own.
        live = not args.file
        passed = report(result, day=args.day if live else "", campaign_id=(args.campaign or "") if live else "")
    except (TypeError, ValueError, AttributeError) as exc:
        # A field of the wrong shape (a hand-edited or truncated file): nothing was checked, which
        # is not the same answer as a draw that does not verify.
        print(f"cannot check: the result is malformed ({exc})", file=sys.stderr)
        return 2
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
