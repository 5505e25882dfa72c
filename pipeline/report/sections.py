"""The report's sections about keys and tokens: rotations, caches, key hygiene, lifetimes, algorithms,
attacks, dead letters."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import duckdb

from pipeline import queries
from pipeline.causes import attack_advice, issuer_fault_text
from pipeline.queries.coverage import split
from pipeline.report.model import (
    SPARK_AFTER,
    SPARK_BEFORE,
    SPARK_BUCKET,
    Code,
    Column,
    Prose,
    Section,
    Spark,
    count_text,
    duration_text,
    seconds_between,
    untrusted,
    when_text,
)
from pipeline.text import ATTACK_CLIENTS_NAMED, attack_clients_text, human_duration


def _rotation_section(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> Section:
    section = Section(
        "rotations",
        "Key rotations: impact and recovery",
        "Each key added to or removed from an issuer's JWKS this week, and the failures it caused on its own "
        "key (stale_jwks and unpublished_key after an addition, retired_key after a removal) per service. "
        f"The line shows those failures per {human_duration(SPARK_BUCKET.total_seconds())} from "
        f"{human_duration(SPARK_BEFORE.total_seconds())} before the step (the marker) to "
        f'{human_duration(SPARK_AFTER.total_seconds())} after; "last failure" is when the service recovered (time to '
        "recover: from the step to it). Whose fault: the issuer's when it removed a key still in use or signed "
        "with a key before publishing it (no cache could have kept up), else the service's JWKS cache.",
        [
            Column("step"),
            Column("issuer"),
            Column("key"),
            Column("service", nowrap=True),
            Column("failures", True),
            Column("causes"),
            Column("first failure"),
            Column("last failure (recovered)"),
            Column("fault"),
            Column("around the step"),
        ],
        empty="No key was added or removed this week.",
    )
    steps: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    window = queries.Filters(since=since, until=until)
    for row in queries.rotation_effects(con, window):  # every step, those without failures included
        steps.setdefault((row["step_ts"], row["issuer"], row["action"], row["kid"]), [])
    for row in queries.rotation_impact(con, window):
        steps.setdefault((row["step_ts"], row["issuer"], row["action"], row["kid"]), []).append(row)
    section.facts["damage"] = queries.rotation_damage_count(con, window)
    section.facts["issuer_faults"] = queries.issuer_faults(con, window)
    for fault in section.facts["issuer_faults"]:
        section.notes.append("The issuer's fault: " + issuer_fault_text(fault))
    buckets = int((SPARK_BEFORE + SPARK_AFTER) / SPARK_BUCKET)
    marker = int(SPARK_BEFORE / SPARK_BUCKET)
    every = [{"issuer": issuer, "kid": kid, "action": action, "ts": ts} for ts, issuer, action, kid in steps]
    series = queries.rotation_step_series_many(con, every, SPARK_BEFORE, SPARK_AFTER, SPARK_BUCKET, hourly=True)
    if every and split(con, queries.Filters(since=min(s["ts"] for s in every) - SPARK_BEFORE)) is not None:
        section.notes.append("Lines over rolled hours put each hour's failures in the bucket of its first failure.")
    for (step_ts, issuer, action, kid), rows in sorted(steps.items(), key=lambda item: (item[0][0], item[0][1])):
        values = [0] * buckets
        for n, failures in series.get((issuer, kid, action, step_ts), {}).items():
            if 0 <= n < buckets:
                values[n] = failures
        spark = Spark(tuple(values), marker, f"{action} {kid} at {when_text(step_ts)}: {sum(values):,} failures")
        hit = [r for r in rows if r["failures"]]
        total = sum(int(r["failures"]) for r in hit)
        section.facts["steps"] = section.facts.get("steps", 0) + 1
        section.facts["failures"] = section.facts.get("failures", 0) + total
        label = f"{when_text(step_ts)} {action}"
        if not hit:
            section.rows.append([label, issuer, Code(kid or "–"), "none affected", "0", "–", "–", "–", "–", spark])
            continue
        for n, row in enumerate(hit):
            section.rows.append(
                [
                    label if n == 0 else "",
                    issuer if n == 0 else "",
                    Code(kid or "–") if n == 0 else "",
                    row["service"],
                    count_text(row["failures"]),
                    ", ".join(row["causes"] or []),
                    when_text(row["first_failure"]),
                    f"{when_text(row['last_failure'])} "
                    f"(+{duration_text(row['recovered_after_s'])})",
                    row["fault"],
                    spark if n == 0 else "",
                ]
            )
        if len(hit) > 1:
            section.notes.append(
                f"{action} {kid} at {when_text(step_ts)}: {total:,} failures across {len(hit)} services."
            )
    return section


def _cache_section(
    con: duckdb.DuckDBPyConnection, window: queries.Filters, hygiene: list[dict[str, Any]], until: datetime
) -> Section:
    section = Section(
        "caches",
        "JWKS caches that outlive the rotation overlap",
        "A service's JWKS cache must refresh within the overlap its issuer leaves between publishing a new key "
        "and signing with it, or it rejects the new tokens (stale_jwks). Cache lifetime: the oldest key set a "
        "service reported when rejecting (service_jwks_fetched_at), else the longest stale_jwks window (a "
        "lower bound). Overlap: the issuer's newest added key, from publication to first use. When the issuer "
        "signed with that key before publishing it there is no overlap to keep within: those failures are the "
        "issuer's, and no service is named for them.",
        [Column("service", nowrap=True), Column("issuer"), Column("cache lifetime", True), Column("evidence"),
         Column("overlap", True), Column("verdict")],
        empty="No service reported its JWKS fetch time or failed with stale_jwks this week.",
    )  # fmt: skip
    overlap: dict[str, tuple[float | None, str]] = {}
    for key in hygiene:
        if key["initial"] or key["first_seen"] >= until:
            continue
        seconds = seconds_between(key["first_use"], key["first_seen"])
        overlap[key["issuer"]] = (seconds, key["kid"] or "?")  # hygiene is ordered by first_seen: newest wins
    for row in queries.cache_lifetime_by_service_issuer(con, window):
        reported, stale = row["reported_age_max_s"], row["stale_window_s"]
        if reported is None and stale is None:
            continue
        lifetime = max(v for v in (reported, stale) if v is not None)
        evidence = (
            f"reported on {count_text(row['events_with_fetch_time'])} events"
            if reported is not None and (stale is None or reported >= stale)
            else f"stale_jwks up to {duration_text(stale)} after publication"
        )
        issuer = row["issuer"]
        if issuer not in overlap:
            verdict, shown = "no rotation to compare", "–"
        else:
            seconds, kid = overlap[issuer]
            if seconds is None:
                verdict, shown = f"{kid} not used yet", "open"
            elif seconds <= 0:  # no cache could keep up: the issuer's fault, not the service's
                verdict = f"the issuer's fault: it signed with {kid} {duration_text(-seconds)} before publishing it"
                shown = duration_text(seconds)
                section.facts.setdefault("issuer_early", set()).add(issuer)
            elif lifetime > seconds:
                verdict, shown = f"outlives the overlap by {duration_text(lifetime - seconds)}", duration_text(seconds)
            else:
                verdict, shown = "within the overlap", duration_text(seconds)
        section.rows.append([row["service"], issuer, duration_text(lifetime), evidence, shown, verdict])
        if verdict.startswith("outlives"):
            section.facts.setdefault("outliving", set()).add(row["service"])
    section.rows.sort(key=lambda r: (not str(r[5]).startswith("outlives"), str(r[0]), str(r[1])))
    return section


def _hygiene_section(
    hygiene: list[dict[str, Any]], until: datetime, max_key_age: timedelta, faults: list[dict[str, Any]]
) -> Section:
    """`faults`: the rotation section's issuer faults, to say how many uses after a removal it broke."""
    section = Section(
        "hygiene",
        "Rotation hygiene per issuer",
        "Each signing key published during the week. First and last use: the first and last rejected token it "
        "signed (verified events); last signed: the newest such token's iat. A new key should be published a "
        "cache lifetime before first use; an old key should stay published until the last token it signed has "
        f"expired. Keys older than {human_duration(max_key_age.total_seconds())} are flagged.",
        [
            Column("key"),
            Column("published", nowrap=True),
            Column("first use", nowrap=True),
            Column("publish → first use", True),
            Column("last signed", nowrap=True),
            Column("last use", nowrap=True),
            Column("removed", nowrap=True),
            Column("last use → removal", True),
            Column("age", True),
            Column("flags"),
        ],
        empty="No key was published this week.",
    )
    still_valid = {(f["issuer"], f["kid"]): int(f["failures"]) for f in faults if f["fault"] == "removed_in_use"}
    for key in hygiene:
        flags = []
        initial = bool(key["initial"])
        lead = None if initial else seconds_between(key["first_use"], key["first_seen"])
        if lead is not None and lead < 0:
            flags.append("signed before published")
        tail = seconds_between(key["removed_at"], key["last_use"])
        if key["uses_after_removal"]:
            # Every rejected token it signed counts, expired ones too; only those still valid are the removal's damage.
            valid = still_valid.get((key["issuer"], key["kid"]), 0)
            broken = f"{count_text(valid)} of them still valid (retired_key)" if valid else "none still valid"
            flags.append(f"used {count_text(key['uses_after_removal'])}× after removal, {broken}")
        end = key["removed_at"] or min(key["last_seen"], until)  # still published: as of its last snapshot
        age = (end - key["first_seen"]).total_seconds()
        if age > max_key_age.total_seconds():
            flags.append("older than policy")
        if not key["uses"]:
            flags.append("no use seen")
        kty = key["kty"] + (f" {key['crv']}" if key["crv"] else "")
        section.groups.append(key["issuer"])
        section.rows.append(
            [
                Code(key["kid"] or "–", note=kty),
                "before history" if initial else when_text(key["first_seen"]),
                when_text(key["first_use"]),
                "–" if initial else duration_text(lead),
                when_text(key["last_signed"]),
                when_text(key["last_use"]),
                when_text(key["removed_at"]) if key["removed_at"] else "still published",
                duration_text(tail) if key["removed_at"] else "–",
                ("≥ " if initial else "") + duration_text(age),
                ", ".join(flags) or "ok",
            ]
        )
    return section


def _lifetime_section(con: duckdb.DuckDBPyConnection, window: queries.Filters, policy: timedelta) -> Section:
    limit = policy.total_seconds()
    section = Section(
        "lifetimes",
        f"Token lifetimes over policy ({human_duration(limit)})",
        "Lifetime (exp − iat) of each distinct rejected token whose signature verified, per issuer and client "
        "(azp, else client_id). Long-lived tokens outlive key removals (retired_key) and widen the window a "
        f"stolen token can be replayed. Policy (--max-token-lifetime): {human_duration(limit)}.",
        [Column("issuer"), Column("client", nowrap=True), Column("tokens over policy", True), Column("of tokens", True),
         Column("their events", True), Column("longest", True), Column("typical", True)],
        empty="Every verified token this week lived within the policy.",
    )  # fmt: skip
    checked = over_total = 0
    for row in queries.token_lifetimes(con, window, limit):
        checked += int(row["with_lifetime"])
        over_total += int(row["over_policy"])
        if not row["over_policy"]:
            continue
        section.rows.append(
            [
                row["issuer"],
                untrusted(row["client"]),
                count_text(row["over_policy"]),
                count_text(row["tokens"]),
                count_text(row["events_over_policy"]),
                duration_text(row["max_lifetime_s"]),
                duration_text(row["median_lifetime_s"]),
            ]
        )
    section.notes.append(f"{over_total:,} of {checked:,} verified tokens with exp and iat are over the policy.")
    section.facts.update(over=over_total, checked=checked)
    return section


def _algorithm_section(con: duckdb.DuckDBPyConnection, window: queries.Filters) -> Section:
    section = Section(
        "algorithms",
        "Algorithms in use",
        "The `alg` header of rejected tokens, as sent. Verified: events whose signature verified with an issuer's "
        "key. A `none` variant or an HS* alg against public-key issuers is an attack pattern (see Attacks).",
        [Column("alg"), Column("events", True), Column("tokens", True), Column("verified", True),
         Column("issuers"), Column("main cause"), Column("attack events", True)],
        empty="No token carried a readable alg this week.",
    )  # fmt: skip
    without = 0
    rows = queries.algorithms_in_use(con, window)
    shown = [r for r in rows if r["alg"] is not None]
    for row in shown[:20]:
        section.rows.append(
            [
                Code(untrusted(row["alg"], 24)),
                count_text(row["events"]),
                count_text(row["tokens"]),
                count_text(row["verified"]),
                ", ".join(row["issuers"] or []) or "–",
                row["main_cause"],
                count_text(row["attack_events"]),
            ]
        )
    if len(shown) > 20:
        rest = shown[20:]
        section.notes.append(f"{len(rest)} more algs with {sum(int(r['events']) for r in rest):,} events in all.")
    without = sum(int(r["events"]) for r in rows if r["alg"] is None)
    if without:
        section.notes.append(f"{without:,} events had no readable alg (no token sampled, or a malformed token).")
    return section


def _attack_section(con: duckdb.DuckDBPyConnection, window: queries.Filters, causes: list[dict[str, Any]]) -> Section:
    """`causes`: the week's `cause_counts_vs_previous` rows, whose `with_attacks` count events, not labels."""
    section = Section(
        "attacks",
        "Attacks",
        "Hostile patterns in rejected tokens, whatever their cause.",
        [Column("attack"), Column("events", True), Column("services"), Column("clients"),
         Column("first seen", nowrap=True), Column("last seen", nowrap=True), Column("what to do")],
        empty="No attack pattern seen this week.",
    )  # fmt: skip
    found = queries.attacks(con, window)
    if found:  # events, not labels: one token can carry several (alg none and an injected jwk)
        section.facts["events"] = sum(int(r["with_attacks"]) for r in causes)
    named = queries.attack_client_ids(con, window, ATTACK_CLIENTS_NAMED) if found else []
    for row in found:
        section.facts.setdefault("kinds", []).append(row["attack"])
        advice = attack_advice(row["attack"])
        section.rows.append(
            [
                Code(row["attack"]),
                count_text(row["events"]),
                ", ".join(row["services"] or []),
                attack_clients_text(named, row["attack"], int(row["clients"])),
                when_text(row["first_seen"]),
                when_text(row["last_seen"]),
                Prose(advice),
            ]
        )
    return section


def _dead_letter_section(con: duckdb.DuckDBPyConnection, since: datetime, until: datetime) -> Section:
    section = Section(
        "dead_letters",
        "Input that could not be read",
        "Records that failed their wire model (dead letters), by kind and reason, dated by event time: that of "
        "the record just before each on its partition (a dead letter may have no readable time of its own), else "
        "when it was received. Each is kept in the store with its reason and a redacted excerpt.",
        [Column("kind"), Column("reason"), Column("records", True), Column("first", nowrap=True),
         Column("last", nowrap=True), Column("example (redacted)")],
        empty="No dead letters this week.",
    )  # fmt: skip
    received = 0
    for row in queries.dead_letters_in(con, since, until):
        received += int(row["records"]) - int(row["by_event_time"])
        section.rows.append(
            [
                row["kind"],
                untrusted(row["reason"], 80),
                count_text(row["records"]),
                when_text(row["first_at"]),
                when_text(row["last_at"]),
                Code(untrusted(row["example"], 60)),
            ]
        )
    if received:
        section.notes.append(f"{received:,} of them had no neighbour on their partition: dated when received.")
    return section
