"""Create a user straight in the metadata database: the first admin of a deployed cluster.

``tessera up`` makes the local admin itself; on Kubernetes run this once in a metanode pod
(it has the database settings), the password on standard input:

    kubectl -n tessera exec -i deploy/tessera-meta -- python -m metanode.bootstrap admin --admin < pw.txt
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys

from metanode import users
from metanode.db import Database
from metanode.schema import migrate
from tessera.errors import TesseraError


async def create(dsn: str, name: str, password: str, *, is_admin: bool) -> str:
    """Apply migrations if needed, then create the user; returns the user id."""
    db = Database(dsn, min_size=1, max_size=2)
    await db.open()
    try:
        await migrate(db)
        pw_hash = await users.hash_password(password)
        user = await db.run(lambda conn: users.create_user(conn, name, pw_hash, is_admin=is_admin))
        return str(user.user_id)
    finally:
        await db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m metanode.bootstrap",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", help="user name")
    parser.add_argument("--admin", action="store_true", help="make the user an admin")
    parser.add_argument(
        "--db", default=os.environ.get("TESSERA_DB", ""), help="DSN (default: $TESSERA_DB)"
    )
    args = parser.parse_args(argv)
    if not args.db:
        print("bootstrap: no database: pass --db or set TESSERA_DB", file=sys.stderr)
        return 2
    password = (
        getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    )
    try:
        users.check_user_name(args.name)
        user_id = asyncio.run(create(args.db, args.name, password, is_admin=args.admin))
    except TesseraError as e:
        print(f"bootstrap: {e.message}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"bootstrap: cannot reach the database: {e}", file=sys.stderr)
        return 1
    print(f"created {'admin ' if args.admin else ''}user {args.name} ({user_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
