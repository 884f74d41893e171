"""Writes pii-labelled.jsonl: the labelled set the PII detector is scored on (issue 15).

Synthetic lines (invented names, reserved domains such as example.com, documentation IP
ranges, test card numbers built to pass or fail the Luhn check, IBANs built to pass or fail
ISO 13616's mod-97 check). Each line: {"text": ..., "entities": [[start, end, TYPE], ...]}.
Types: EMAIL, PHONE, CREDIT_CARD, IBAN, IP. "hard negative" lines hold strings that look like
PII and are not (numbers failing a checksum, order/invoice/serial ids, versions, dates, bad
octets). Written once, committed before the detector; never edited afterwards.
Run: python benchmarks/data/pii/make_pii_set.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

R = random.Random(15)
NAMES = ["alice", "bob.martin", "c.okafor", "dana_li", "eve-r", "farid", "g.rossi", "hana.k"]
DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example.co.uk", "test.example"]


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def card(valid: bool) -> str:
    prefix = R.choice(["4", "51", "37", "6011"])
    length = 15 if prefix == "37" else 16
    body = prefix + "".join(R.choice("0123456789") for _ in range(length - len(prefix) - 1))
    check = luhn_digit(body)
    if not valid:
        check = str((int(check) + R.randint(1, 9)) % 10)
    digits = body + check
    sep = R.choice(["", " ", "-"])
    if length == 16:
        return sep.join(digits[i : i + 4] for i in range(0, 16, 4))
    return sep.join([digits[:4], digits[4:10], digits[10:]])


def iban(valid: bool) -> str:
    country, length = R.choice([("DE", 18), ("GB", 18), ("FR", 23), ("NL", 14), ("ES", 20)])
    if country in ("GB", "NL"):
        bank = "".join(R.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        bban = bank + "".join(R.choice("0123456789") for _ in range(length - 4))
    else:
        bban = "".join(R.choice("0123456789") for _ in range(length))
    rearranged = bban + country + "00"
    number = int("".join(str(int(c, 36)) for c in rearranged))
    check = 98 - number % 97
    if not valid:
        check = (check + R.randint(1, 50)) % 97 or 1
    raw = f"{country}{check:02d}{bban}"
    if R.random() < 0.5:
        return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))
    return raw


def email() -> str:
    return f"{R.choice(NAMES)}{R.choice(['', str(R.randint(1, 99))])}@{R.choice(DOMAINS)}"


def phone() -> str:
    forms = [
        lambda: f"+44 20 7946 {R.randint(0, 9999):04d}",
        lambda: f"(555) {R.randint(200, 999)}-{R.randint(0, 9999):04d}",
        lambda: f"555-{R.randint(100, 999)}-{R.randint(0, 9999):04d}",
        lambda: f"+1 555 {R.randint(200, 999)} {R.randint(0, 9999):04d}",
        lambda: f"+49 30 {R.randint(1000000, 9999999)}",
        lambda: f"+33 1 {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)}",
        lambda: f"06 {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)} {R.randint(10, 99)}",
    ]
    return R.choice(forms)()


def ip() -> str:
    if R.random() < 0.8:
        net = R.choice(["192.0.2", "198.51.100", "203.0.113", "10.0.0", "172.16.5"])
        return f"{net}.{R.randint(1, 254)}"
    return f"2001:db8:{R.randint(0, 0xFFFF):x}::{R.randint(1, 0xFFFF):x}"


MAKERS = {"EMAIL": email, "PHONE": phone, "CREDIT_CARD": lambda: card(True),
          "IBAN": lambda: iban(True), "IP": ip}
TEMPLATES = {
    "EMAIL": ["Please write to {} before Friday.", "Contact: {}", "cc {} on the thread",
              "Her address is {}, not the old one.", "Sent from {} at 09:14"],
    "PHONE": ["Call me on {} after lunch.", "Phone: {}", "tel. {} (office)",
              "You can reach the desk at {}.", "mobile {} or e-mail"],
    "CREDIT_CARD": ["Card number {} expires 04/27.", "paid with card {}", "CC: {}",
                    "Visa {} was charged twice", "charge the card {} please"],
    "IBAN": ["Transfer to IBAN {} by Monday.", "IBAN: {}", "account {} (IBAN)",
             "Refund goes to {}", "Our bank details: IBAN {}"],
    "IP": ["Login from {} was blocked.", "server at {} is down", "client IP {}",
           "ssh admin@ into {} failed", "Requests from {} spiked at noon"],
}
NEGATIVES = [
    lambda: f"Order number {R.randint(10**15, 10**16 - 1)} has shipped.",
    lambda: f"Card {card(False)} was rejected as invalid.",
    lambda: f"Reference {iban(False)} is not an account.",
    lambda: f"Upgrade to version {R.randint(1, 9)}.{R.randint(0, 20)}.{R.randint(0, 9)} today.",
    lambda: f"Build 4.{R.randint(0, 9)}.{R.randint(0, 99)}.{R.randint(300, 999)} failed the tests.",
    lambda: f"Meeting on {R.randint(2020, 2026)}-{R.randint(1, 12):02d}-{R.randint(1, 28):02d} at 14:30.",
    lambda: f"Invoice INV-{R.randint(100000, 999999)} totals {R.randint(10, 999)}.{R.randint(0, 99):02d} EUR.",
    lambda: f"Employee ID {R.randint(1000000000, 9999999999)} joined the team.",
    lambda: f"ISBN 978-{R.randint(0, 9)}-{R.randint(100, 999)}-{R.randint(10000, 99999)}-{R.randint(0, 9)}",
    lambda: f"Tracking code {R.randint(10**11, 10**12 - 1)} arrives tomorrow.",
    lambda: f"The ratio was {R.randint(1, 99)}.{R.randint(0, 99)}.{R.randint(0, 999)} in the table.",
    lambda: f"Serial no. {R.choice('ABCDEF')}{R.randint(10**9, 10**10 - 1)}",
    lambda: f"Scores: {R.randint(300, 999)}.{R.randint(0, 255)}.{R.randint(0, 255)}.{R.randint(0, 255)}",
    lambda: f"Use the handle @{R.choice(NAMES).replace('.', '')} on the forum.",
    lambda: f"Write to {R.choice(NAMES)} at example dot com (spelled out, not an address).",
    lambda: f"Patent US{R.randint(1000000, 9999999)} was granted.",
    lambda: f"Temperature {R.randint(10, 40)}.{R.randint(0, 9)} C, humidity {R.randint(20, 90)} %",
    lambda: f"Room {R.randint(100, 999)}, floor {R.randint(1, 9)}, building {R.choice('ABC')}",
    lambda: f"Account ID {R.randint(10**13, 10**14 - 1)} (internal, not a bank account)",
    lambda: f"Time {R.randint(10, 23)}:{R.randint(10, 59)}:{R.randint(10, 59)} was logged.",
]
PLAIN = ["The model was retrained on Tuesday.", "Nothing to report from the night shift.",
         "Accuracy rose by two points.", "Please review the attached draft.",
         "The meeting moved to the big room.", "We ship the release next week."]


def positive_line() -> dict:
    kinds = R.sample(list(MAKERS), R.choice([1, 1, 1, 2]))
    text, entities = "", []
    for kind in kinds:
        value = MAKERS[kind]()
        before, after = R.choice(TEMPLATES[kind]).split("{}")
        start = len(text) + len(before)
        entities.append([start, start + len(value), kind])
        text += before + value + after + " "
    return {"text": text.strip(), "entities": entities}


def main() -> None:
    lines = [positive_line() for _ in range(320)]
    lines += [{"text": R.choice(NEGATIVES)(), "entities": []} for _ in range(200)]
    lines += [{"text": R.choice(PLAIN), "entities": []} for _ in range(30)]
    R.shuffle(lines)
    out = Path(__file__).with_name("pii-labelled.jsonl")
    out.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


if __name__ == "__main__":
    main()
