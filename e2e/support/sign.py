#!/usr/bin/env python3
"""Stdlib-only generator of AnyCable signed stream names and JWTs.

Mirrors the Python snippets of the AnyCable docs (anycable/anycable docs/signed_streams.md,
docs/jwt_identification.md):

    encoded = base64.b64encode(json.dumps(stream_name).encode('utf-8')).decode('utf-8')
    digest = hmac.new(SECRET_KEY.encode('utf-8'), encoded.encode('utf-8'), hashlib.sha256).hexdigest()
    signed_stream_name = f"{encoded}--{digest}"

    payload = {'ext': json.dumps(identifiers), 'exp': int(time.time()) + 300}
    jwt.encode(payload, ENCRYPTION_KEY, algorithm='HS256')   # PyJWT, re-done here with hmac

Usage:
    sign.py stream SECRET STREAM_NAME
    sign.py jwt SECRET IDENTIFIERS_JSON [--exp UNIX_SECONDS] [--compact-ext]
    sign.py broadcast-key SECRET

`jwt` parses IDENTIFIERS_JSON into an object and sets ext = json.dumps(identifiers),
exactly like those docs (note: Python's default separators put a space after ':' and ',');
--compact-ext uses separators=(",", ":") instead (the compact form of the fixed tokens
in the other tests).
"""
import base64
import hashlib
import hmac
import json
import sys
import time


def sign_stream_name(stream_name, secret):
    encoded = base64.b64encode(json.dumps(stream_name).encode("utf-8")).decode("utf-8")
    digest = hmac.new(secret.encode("utf-8"), encoded.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{encoded}--{digest}"


def _b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def make_jwt(identifiers, secret, exp=None, compact_ext=False):
    if compact_ext:
        ext = json.dumps(identifiers, separators=(",", ":"))
    else:
        ext = json.dumps(identifiers)
    payload = {"ext": ext, "exp": int(time.time()) + 300 if exp is None else exp}
    # PyJWT serialises header and payload compactly; header keys sorted.
    header = {"alg": "HS256", "typ": "JWT"}
    h = _b64url(json.dumps(header, separators=(",", ":")).encode("utf-8"))
    p = _b64url(json.dumps(payload, separators=(",", ":")).encode("utf-8"))
    s = _b64url(hmac.new(secret.encode("utf-8"), h + b"." + p, hashlib.sha256).digest())
    return (h + b"." + p + b"." + s).decode("ascii")


def broadcast_key(secret):
    return hmac.new(secret.encode("utf-8"), b"broadcast-cable", hashlib.sha256).hexdigest()


def main(argv):
    if len(argv) >= 3 and argv[0] == "stream":
        print(sign_stream_name(argv[2], argv[1]))
        return 0
    if len(argv) >= 3 and argv[0] == "jwt":
        secret, identifiers = argv[1], json.loads(argv[2])
        exp, compact = None, False
        rest = argv[3:]
        i = 0
        while i < len(rest):
            if rest[i] == "--exp":
                exp = int(rest[i + 1])
                i += 2
            elif rest[i] == "--compact-ext":
                compact = True
                i += 1
            else:
                raise SystemExit(f"unknown option {rest[i]!r}")
        print(make_jwt(identifiers, secret, exp=exp, compact_ext=compact))
        return 0
    if len(argv) == 2 and argv[0] == "broadcast-key":
        print(broadcast_key(argv[1]))
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
