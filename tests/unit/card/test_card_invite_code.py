"""Invite codes: shape, stability, check letter, and parsing of pasted pass-phrases."""
import pytest

from services.card import invite_code as codes
from services.common.errors import InvalidArgument

SECRET = b"s" * 32


def test_a_code_has_nine_characters_without_look_alikes_and_ends_in_a_check_letter():
    for n in range(200):
        code = codes.code_for(SECRET, f"user-{n}")
        assert len(code) == 9 >= 8
        assert not set(code) & set("0O1IL")
        assert code[-1] in codes.CHECK_LETTERS
        assert codes.is_well_formed(code)


def test_the_code_is_stable_per_user_and_differs_between_users_and_campaign_secrets():
    assert codes.code_for(SECRET, "alice") == codes.code_for(SECRET, "alice")
    assert codes.code_for(SECRET, "alice") != codes.code_for(SECRET, "bob")
    assert codes.code_for(SECRET, "alice") != codes.code_for(b"t" * 32, "alice")
    assert codes.code_for(SECRET, "alice", 1) != codes.code_for(SECRET, "alice", 0)


def test_the_check_letter_catches_a_typo_and_a_swap():
    code = codes.code_for(SECRET, "alice")
    typo = ("3" if code[0] != "3" else "4") + code[1:]
    swapped = code[1] + code[0] + code[2:]
    assert not codes.is_well_formed(typo)
    if code[0] != code[1]:
        assert not codes.is_well_formed(swapped)


def test_the_pass_phrase_carries_the_code_and_the_face_value():
    text = codes.pass_phrase("K7QM3XPAB", 2500)
    assert text.startswith("¥K7QM3XPAB¥") and "25元免单卡" in text


def test_a_pass_phrase_that_offers_no_card_promises_none_and_still_carries_the_code():
    code = codes.code_for(SECRET, "alice")
    text = codes.pass_phrase(code, 2500, offers_card=False)
    assert text == f"¥{code}¥ 复制这段口令，打开App参与免单活动" and "免单卡" not in text
    assert codes.extract_codes(text)[0] == code


@pytest.mark.parametrize(
    "shape",
    [
        "{c}",
        "{l}",
        "¥{c}¥ 复制这段口令，打开App领25元免单卡",
        "￥{c}￥复制这段口令",
        "快来！ ¥ {c} ¥ 打开App",
        "¥{a}\n{b}¥",
        "  {l}  \n",
        "我朋友发的：{c}，领卡",
        "{fw}",
        "¥{c}¥ 复制这段口令，打开App领25元免单卡 ¥{c}¥",
        # Split inside a sentence, as people read a code aloud or retype it.
        "我的邀请码是 {a} {b} 快来",
        "my code is {a}-{b}, thanks",
        "CODE {a} {b} PLEASE",
        # Zero-width characters some chat apps put into copied text.
        "{a}\u200b{b}",
        "¥{a}\ufeff{b}¥",
        # Soft hyphens and direction marks: as invisible, so the user cannot see what to fix.
        "¥{a}\u00ad{b}¥ 复制这段口令",
        "{a}\u200e{b}",
        "\u202a{a}\u202c\u202a{b}\u202c",
        "快来 {a}\u2066{b}\u2069 领卡",
    ],
)
def test_a_code_is_found_in_any_reasonable_pasted_text(shape):
    code = codes.code_for(SECRET, "alice")
    fullwidth = "".join(chr(ord(ch) + 0xFEE0) for ch in code)
    text = shape.format(c=code, l=code.lower(), a=code[:4], b=code[4:], fw=fullwidth)
    assert codes.extract_codes(text)[0] == code


@pytest.mark.parametrize("text", ["", "   ", "🎉🎉🎉", "复制这段口令，打开App领25元免单卡", "¥¥", "HELLO WORLD 12345"])
def test_text_without_a_code_is_invalid_argument_on_field_text(text):
    with pytest.raises(InvalidArgument) as err:
        codes.extract_codes(text)
    assert err.value.violations[0][0] == "text"


def test_a_megabyte_of_garbage_is_refused_before_it_is_scanned():
    with pytest.raises(InvalidArgument) as err:
        codes.extract_codes("垃圾" * 500_000)
    assert err.value.violations[0][0] == "text"
    with pytest.raises(InvalidArgument):
        codes.extract_codes("x" * 4097)


def test_a_code_with_a_wrong_check_letter_is_not_a_candidate():
    code = codes.code_for(SECRET, "alice")
    wrong = code[:-1] + next(c for c in codes.CHECK_LETTERS if c != code[-1])
    with pytest.raises(InvalidArgument):
        codes.extract_codes(f"¥{wrong}¥")



@pytest.mark.parametrize("text", ["{c} SEE YA", "{c} AND {a} {b}", "¥{c}¥ MY CODE {a} {b}"])
def test_a_text_whose_code_is_found_whole_gets_only_that_candidate(text):
    # AcceptInvite's request fingerprint is made of the candidates: texts that found their code
    # before split codes were looked for must give exactly the same list (a retry across the
    # upgrade is a retry), and no stretch across words may add a well-formed wrong code.
    code = codes.code_for(SECRET, "alice")
    other = codes.code_for(SECRET, "bob")
    assert codes.extract_codes(text.format(c=code, a=other[:4], b=other[4:])) == [code]
