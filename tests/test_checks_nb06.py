"""helpers.checks.nb06: the notebook 06 challenge checks pass good answers and reject weak ones with a hint."""

import html
import re
import secrets
import unicodedata

import pytest

from helpers.checks.nb06 import (
    NOT_IBANS,
    VALID_IBANS,
    ChallengeNotPassed,
    check_data_block,
    check_iban_redactor,
    iban_checksum_valid,
)
from helpers.sanitize import data_block, strip_invisible

IBAN_CANDIDATE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")


def good_redactor(text):
    return IBAN_CANDIDATE.sub(lambda m: "[REDACTED:iban]" if iban_checksum_valid(m.group()) else m.group(), text)


def pattern_only_redactor(text):
    return IBAN_CANDIDATE.sub("[REDACTED:iban]", text)


def test_iban_checksum_on_the_fixtures():
    assert all(iban_checksum_valid(iban) for iban in VALID_IBANS)
    assert not any(iban_checksum_valid(text) for text in NOT_IBANS)


def test_a_good_iban_redactor_passes():
    assert check_iban_redactor(good_redactor) == {"redacted": len(VALID_IBANS), "left_alone": len(NOT_IBANS)}


@pytest.mark.parametrize(
    "redactor,hint",
    [
        (pattern_only_redactor, "mod-97"),
        (lambda text: text, "should become"),
        (lambda text: None, "return the redacted text"),
        (lambda text: re.sub(r"[A-Z]{2}\d{2}\S*", "[REDACTED:iban]", text), "should become"),
    ],
)
def test_weak_iban_redactors_fail_with_a_hint(redactor, hint):
    with pytest.raises(ChallengeNotPassed, match=hint):
        check_iban_redactor(redactor)


def library_block(text, label):
    block = data_block(text, label)
    return block.text, block.closing


def fixed_tags(text, label):
    return f"<{label}>\n{html.escape(strip_invisible(text))}\n</{label}>", f"</{label}>"


def nonce_without_escaping(text, label):
    nonce = secrets.token_hex(8)
    return f"<{label}-{nonce}>\n{text}\n</{label}-{nonce}>", f"</{label}-{nonce}>"


def ascii_escaping_only(text, label):
    nonce = secrets.token_hex(8)
    body = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<{label}-{nonce}>\n{body}\n</{label}-{nonce}>", f"</{label}-{nonce}>"


def no_invisible_stripping(text, label):
    nonce = secrets.token_hex(8)
    body = unicodedata.normalize("NFKC", text)
    for bracket in "‹⟨〈":
        body = body.replace(bracket, "&lt;")
    for bracket in "›⟩〉":
        body = body.replace(bracket, "&gt;")
    body = body.replace("<", "&lt;").replace(">", "&gt;")
    return f"<{label}-{nonce}>\n{body}\n</{label}-{nonce}>", f"</{label}-{nonce}>"


def test_the_library_data_block_passes():
    assert check_data_block(library_block) == {"attacks": 7}


@pytest.mark.parametrize(
    "make_block,hint",
    [
        (fixed_tags, "random part"),
        (nonce_without_escaping, "escape every"),
        (ascii_escaping_only, "look-alikes"),
        (no_invisible_stripping, "Invisible characters"),
        (lambda text, label: (text, "</x>"), "should name the label"),
        (lambda text, label: "just a string", "two strings"),
    ],
)
def test_breakable_blocks_fail_with_a_hint(make_block, hint):
    with pytest.raises(ChallengeNotPassed, match=hint):
        check_data_block(make_block)


def test_the_package_redacts_the_challenge_ibans_and_leaves_the_look_alikes():
    from helpers.sanitize import redact

    for iban in VALID_IBANS:
        assert redact(f"Please wire the deposit to {iban}, thanks.").found == {"iban": 1}, iban
    for control in NOT_IBANS:
        assert redact(f"Reference: {control}.").found == {}, control
