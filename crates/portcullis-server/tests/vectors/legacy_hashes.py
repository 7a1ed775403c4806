"""Password hashes made by Python's own libraries, for the import test (issue 31).

Prints one JSON object per line: {"username", "password", "password_hash", "made_by"}.
bcrypt from the `bcrypt` package (pyca), argon2 from `argon2-cffi` (the reference C
implementation), scrypt and PBKDF2-SHA256 from the standard library's hashlib, written
as PHC strings the way docs/migrating-from-passport.md tells.
"""
import base64, hashlib, json, os, sys

import argon2
import bcrypt


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode().rstrip("=")


def emit(username, password, password_hash, made_by):
    print(json.dumps({"username": username, "password": password,
                      "password_hash": password_hash, "made_by": made_by}))


pw = "python bcrypt password"
emit("py-bcrypt-2b", pw, bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=10)).decode(), "bcrypt (pyca) $2b$ cost 10")
emit("py-bcrypt-2a", pw + " a", bcrypt.hashpw((pw + " a").encode(), bcrypt.gensalt(rounds=8, prefix=b"2a")).decode(), "bcrypt (pyca) $2a$ cost 8")

pw = "argon2 cffi password"
emit("py-argon2id", pw, argon2.PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1).hash(pw), "argon2-cffi argon2id")
emit("py-argon2i", pw + " i", argon2.PasswordHasher(time_cost=3, memory_cost=4096, parallelism=2, type=argon2.Type.I).hash(pw + " i"), "argon2-cffi argon2i")

pw = "hashlib scrypt password"
salt = os.urandom(16)
ln, r, p = 14, 8, 1
dk = hashlib.scrypt(pw.encode(), salt=salt, n=2 ** ln, r=r, p=p, dklen=32, maxmem=64 * 1024 * 1024)
emit("py-scrypt", pw, f"$scrypt$ln={ln},r={r},p={p}${b64(salt)}${b64(dk)}", "hashlib.scrypt")

pw = "hashlib pbkdf2 password"
salt = os.urandom(16)
i = 100_000
dk = hashlib.pbkdf2_hmac("sha256", pw.encode(), salt, i, 32)
emit("py-pbkdf2", pw, f"$pbkdf2-sha256$i={i},l=32${b64(salt)}${b64(dk)}", "hashlib.pbkdf2_hmac sha256")
