"""The scenario simulator: one deterministic day of JWT rejections around key rotations, with truth.

`simulate()` returns a `Scenario` (the config, the JWKS snapshots, the events, the token
samples, and the true cause of every events line); `write_scenario()` writes it as
`jwtriage simulate` does. The same arguments give byte-identical output.

| module | role |
|---|---|
| scenario | the day: plans the events, writes each line as a service would log it, asks the judge; `simulate` |
| cast | data tables: issuers and their rotation plans, services, clients, validator messages |
| world | the window's schedule: signing lanes, the watcher's JWKS snapshots, each service's fetches |
| plan | the story: the mix of kinds, where and when each event happens |
| tokens | the clients' tokens: minted, held and reused (`Token` knows which key really signed) |
| builders | one token builder per kind, each failing exactly one check; the hostile and malformed ones |
| keys | the shipped simulator keys, base64url segments, deterministic signing |
| judge | the ground truth: DESIGN.md's order with knowledge of the real signer; independent of `pipeline.engine` |
| output | the jwtriage config for the scenario, and the JSONL files |
| records | `Record` (one message of one stream) and `Scenario` |
| clock | integer epoch milliseconds and RFC 3339 |

The judge is the yardstick for `pipeline.engine.classify` and must not import it: a bug
shared by both would go unseen.
"""

from __future__ import annotations

from pipeline.simulator.cast import REPORTED_ERRORS
from pipeline.simulator.clock import DEFAULT_START
from pipeline.simulator.output import write_scenario
from pipeline.simulator.records import Record, Scenario
from pipeline.simulator.scenario import simulate

__all__ = ["DEFAULT_START", "REPORTED_ERRORS", "Record", "Scenario", "simulate", "write_scenario"]
