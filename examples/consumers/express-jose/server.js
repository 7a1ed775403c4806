'use strict';
// A resource server that trusts Portcullis access tokens: Express 5 and jose
// (createRemoteJWKSet + jwtVerify). See README.md.

const express = require('express');
const { createRemoteJWKSet, jwtVerify, errors } = require('jose');

const port = Number(process.env.PORT || 3000);
const issuer = required('PORTCULLIS_ISSUER').replace(/\/+$/, '');
const audience = required('AUDIENCE');
const algorithms = required('ALGORITHMS').split(',').map((a) => a.trim()).filter(Boolean);
const requiredScope = process.env.REQUIRED_SCOPE || 'notes:read';

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} must be set`);
    process.exit(2);
  }
  return value;
}

// Find the JWKS through the issuer's metadata document, and check that the document
// speaks for the issuer we were told to trust.
async function discoverJwksUri() {
  const response = await fetch(`${issuer}/.well-known/openid-configuration`, {
    redirect: 'error',
    signal: AbortSignal.timeout(5000),
  });
  if (!response.ok) throw new Error(`metadata: HTTP ${response.status}`);
  const metadata = await response.json();
  if (metadata.issuer !== issuer) {
    throw new Error(`metadata names issuer ${metadata.issuer}, expected ${issuer}`);
  }
  const jwksUri = new URL(metadata.jwks_uri);
  if (jwksUri.origin !== new URL(issuer).origin) {
    throw new Error(`jwks_uri ${jwksUri} is not on the issuer's origin`);
  }
  return jwksUri;
}

// The key set could not be had: the fetch failed (a TypeError) or timed out
// (JWKSTimeout), the answer was not 200 or not JSON (jose throws a bare JOSEError for
// both), or it was no key set (JWKSInvalid). That is the issuer's outage, not a verdict
// on the token: 503. A kid the set does not have is a verdict (JWKSNoMatchingKey): 401.
function keysUnavailable(err) {
  return (
    !(err instanceof errors.JOSEError) ||
    err instanceof errors.JWKSTimeout ||
    err instanceof errors.JWKSInvalid ||
    err.code === errors.JOSEError.code
  );
}

async function main() {
  // jose caches the key set (cacheMaxAge, 10 minutes by default) and refetches it for a
  // kid it does not know, at most once per cooldownDuration (30 s by default).
  const jwks = createRemoteJWKSet(await discoverJwksUri(), {
    cacheMaxAge: 5 * 60 * 1000,
    cooldownDuration: 30 * 1000,
    timeoutDuration: 5000,
  });

  const verifyOptions = {
    issuer,
    audience,
    algorithms, // pinned: never taken from the token
    typ: 'at+jwt', // RFC 9068; jose also accepts application/at+jwt
    requiredClaims: ['exp', 'iat', 'sub'],
    clockTolerance: 0,
  };

  async function authenticate(req, res, next) {
    // The token comes from the Authorization header only: never a query string or a cookie.
    const header = req.get('authorization') || '';
    const match = /^Bearer ([A-Za-z0-9\-_.~+/]+=*)$/i.exec(header);
    if (!match) {
      if (header) {
        res.set('WWW-Authenticate', 'Bearer realm="notes", error="invalid_request"');
        return res.status(401).json({ error: 'invalid_request' });
      }
      res.set('WWW-Authenticate', 'Bearer realm="notes"');
      return res.status(401).json({ error: 'unauthorized' });
    }
    try {
      const { payload } = await jwtVerify(match[1], jwks, verifyOptions);
      req.claims = payload;
      return next();
    } catch (err) {
      if (keysUnavailable(err)) {
        console.error('JWKS unavailable:', err.code || err.name, err.message);
        res.set('Retry-After', '30');
        return res.status(503).json({
          error: 'temporarily_unavailable',
          error_description: 'the keys to check the token cannot be fetched; try again',
        });
      }
      if (process.env.DEBUG_CONSUMER) console.error('refused:', err.code, err.message);
      res.set(
        'WWW-Authenticate',
        'Bearer realm="notes", error="invalid_token", error_description="the access token is invalid or expired"',
      );
      return res.status(401).json({ error: 'invalid_token' });
    }
  }

  function requireScope(scope) {
    return (req, res, next) => {
      const granted = typeof req.claims.scope === 'string' ? req.claims.scope.split(' ') : [];
      if (!granted.includes(scope)) {
        res.set('WWW-Authenticate', `Bearer realm="notes", error="insufficient_scope", scope="${scope}"`);
        return res.status(403).json({ error: 'insufficient_scope' });
      }
      return next();
    };
  }

  const app = express();
  app.get('/healthz', (req, res) => res.json({ status: 'ok' }));
  app.get('/notes', authenticate, requireScope(requiredScope), (req, res) => {
    res.json({ sub: req.claims.sub, notes: [`a note for ${req.claims.sub}`] });
  });
  app.listen(port, '127.0.0.1', () => {
    console.log(`express-jose listening on 127.0.0.1:${port}, trusting ${issuer} (${algorithms.join(',')})`);
  });
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
