"""A resource server that trusts Portcullis access tokens: FastAPI and PyJWT.

Run with `python app.py` (it starts uvicorn on 127.0.0.1:$PORT). See README.md.
"""

import os
import sys

import jwt
import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request


def required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        sys.exit(f"{name} must be set")
    return value


PORT = int(os.environ.get("PORT", "3000"))
ISSUER = required("PORTCULLIS_ISSUER").rstrip("/")
AUDIENCE = required("AUDIENCE")
# Pinned here, never taken from the token.
ALGORITHMS = [a.strip() for a in required("ALGORITHMS").split(",") if a.strip()]
REQUIRED_SCOPE = os.environ.get("REQUIRED_SCOPE", "notes:read")
ACCESS_TOKEN_TYPES = {"at+jwt", "application/at+jwt"}  # RFC 9068

for alg in ALGORITHMS:
    if alg.startswith("HS") or alg.lower() == "none":
        sys.exit(f"ALGORITHMS: {alg} is not a public-key algorithm")

# The key set is cached for 5 minutes; a kid it does not know makes it fetch the set
# again, at most once per 30 s (cooldown_duration).
jwks_client = jwt.PyJWKClient(
    f"{ISSUER}/.well-known/jwks.json",
    cache_jwk_set=True,
    lifespan=300,
    cooldown_duration=30,
    timeout=5,
)

app = FastAPI(title="notes", openapi_url=None, docs_url=None, redoc_url=None)


def unauthorized(error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="notes"'
    if error:
        challenge += f', error="{error}", error_description="the access token is invalid or expired"'
    return HTTPException(status_code=401, detail=error or "unauthorized", headers={"WWW-Authenticate": challenge})


def claims(request: Request) -> dict:
    # The token comes from the Authorization header only: never a query string or a cookie.
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized()
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token.strip():
        raise unauthorized("invalid_request")
    token = token.strip()
    try:
        signing_key = jwks_client.get_signing_key_from_jwt(token)
        decoded = jwt.decode_complete(
            token,
            signing_key.key,
            algorithms=ALGORITHMS,
            issuer=ISSUER,
            audience=AUDIENCE,
            leeway=0,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.PyJWKClientConnectionError as err:
        # The keys could not be fetched: not a verdict on the token.
        raise HTTPException(status_code=503, detail="keys unavailable") from err
    except jwt.PyJWTError as err:
        if os.environ.get("DEBUG_CONSUMER"):
            print(f"refused: {type(err).__name__}: {err}", file=sys.stderr)
        raise unauthorized("invalid_token") from err
    # The header was part of what the signature covers; decode_complete hands it back.
    typ = str(decoded["header"].get("typ", "")).lower()
    if typ not in ACCESS_TOKEN_TYPES:
        raise unauthorized("invalid_token")
    return decoded["payload"]


def require_scope(scope: str):
    def check(token_claims: dict = Depends(claims)) -> dict:
        granted = token_claims.get("scope", "")
        granted = granted.split(" ") if isinstance(granted, str) else []
        if scope not in granted:
            raise HTTPException(
                status_code=403,
                detail="insufficient_scope",
                headers={"WWW-Authenticate": f'Bearer realm="notes", error="insufficient_scope", scope="{scope}"'},
            )
        return token_claims

    return check


@app.get("/healthz")
def healthz() -> dict:
    return {"status": "ok"}


@app.get("/notes")
def notes(token_claims: dict = Depends(require_scope(REQUIRED_SCOPE))) -> dict:
    sub = token_claims["sub"]
    return {"sub": sub, "notes": [f"a note for {sub}"]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=PORT, log_level="warning")
