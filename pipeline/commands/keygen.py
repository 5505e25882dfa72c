"""`jwtriage keygen`: a new secret key for hashing personal claims (`[store] hash_key_file`).

The key never enters the store; the store keeps only its id. Written with mode 0600, never
over an existing file: replacing a key splits every person's stored rows in two.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import IO, Any

from pipeline.commands.common import EXIT_OK
from pipeline.engine.identifiers import IdentifierHasher, generate_key
from pipeline.errors import UsageError


def cmd_keygen(args: argparse.Namespace, stdin: IO[bytes], stdout: IO[str]) -> int:
    key = generate_key()
    kid = IdentifierHasher.from_text(key).kid
    if args.out is None:
        print(key, file=stdout)
        print(f"jwtriage keygen: a new hash key (id {kid}) on stdout; keep it secret", file=sys.stderr)
        return EXIT_OK
    path = Path(args.out)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists: keygen never replaces a key (hint: choose another --out)") from None
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(key + "\n")
    print(
        f'jwtriage keygen: wrote a new hash key (id {kid}) to {path}, mode 0600; set [store] hash_key_file = "{path}"',
        file=stdout,
    )
    return EXIT_OK


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "keygen",
        help="make a secret key for hashing personal claims in the store ([store] hash_key_file)",
        description="Generate a random 256-bit key. The store keeps personal claims (sub, email, ...) as "
        "HMAC-SHA256 under it, so they cannot be recovered by hashing a list of likely names; the key is "
        "never stored in the store, only its id. `consume` refuses to start without one.",
    )
    parser.add_argument("--out", metavar="PATH", help="write it to this new file (mode 0600) instead of stdout")
    parser.set_defaults(handler=cmd_keygen)
