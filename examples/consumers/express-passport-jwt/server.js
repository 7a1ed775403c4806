'use strict';
// A resource server that trusts Portcullis access tokens: Express 5, passport-jwt
// (jsonwebtoken underneath) and jwks-rsa for the keys. See README.md.

const express = require('express');
const passport = require('passport');
const { Strategy: JwtStrategy, ExtractJwt } = require('passport-jwt');
const { passportJwtSecret } = require('jwks-rsa');

const port = Number(process.env.PORT || 3000);
const issuer = required('PORTCULLIS_ISSUER').replace(/\/+$/, '');
const audience = required('AUDIENCE');
const algorithms = required('ALGORITHMS').split(',').map((a) => a.trim()).filter(Boolean);
const requiredScope = process.env.REQUIRED_SCOPE || 'notes:read';

// jsonwebtoken verifies RS*, PS* and ES*; it has no EdDSA. Refuse to start rather than
// refuse every token later.
const SUPPORTED = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];
for (const alg of algorithms) {
  if (!SUPPORTED.includes(alg)) {
    console.error(`ALGORITHMS: ${alg} is not supported by jsonwebtoken (supported: ${SUPPORTED.join(' ')})`);
    process.exit(2);
  }
}

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} must be set`);
    process.exit(2);
  }
  return value;
}

// A key that cannot be fetched (network error, timeout, an answer other than 2xx, a set
// without keys, or jwks-rsa's rate limit) says nothing about the token: answered 503
// below. A kid the set does not have is a verdict: no key, so the token is refused (401).
class KeysUnavailable extends Error {}

passport.use(
  new JwtStrategy(
    {
      // The token comes from the Authorization header only: never a query string or a cookie.
      jwtFromRequest: ExtractJwt.fromAuthHeaderAsBearerToken(),
      // Keys from the issuer's JWKS, cached (10 minutes by default); a kid not in the
      // cache triggers one fetch, at most 10 fetches a minute.
      secretOrKeyProvider: passportJwtSecret({
        jwksUri: `${issuer}/.well-known/jwks.json`,
        cache: true,
        cacheMaxEntries: 10,
        cacheMaxAge: 5 * 60 * 1000,
        rateLimit: true,
        jwksRequestsPerMinute: 10,
        timeout: 5000,
        handleSigningKeyError: (err, cb) =>
          cb(err.name === 'SigningKeyNotFoundError' ? null : new KeysUnavailable(err.message, { cause: err })),
      }),
      // Pinned here, never taken from the token. These three must be given at this level:
      // passport-jwt copies them over jsonWebTokenOptions (even when undefined).
      algorithms,
      issuer,
      audience,
      jsonWebTokenOptions: {
        // Hand the verify callback the header too, so it can check typ.
        complete: true,
        clockTolerance: 0,
      },
    },
    (decoded, done) => {
      const { header, payload } = decoded;
      // RFC 9068: an access token says so in its header.
      const typ = String(header.typ || '').toLowerCase();
      if (typ !== 'at+jwt' && typ !== 'application/at+jwt') {
        return done(null, false, { message: 'not an access token (typ)' });
      }
      // jsonwebtoken accepts a token without exp; we do not.
      if (typeof payload.exp !== 'number' || typeof payload.iat !== 'number') {
        return done(null, false, { message: 'exp and iat are required' });
      }
      if (typeof payload.sub !== 'string' || payload.sub === '') {
        return done(null, false, { message: 'sub is required' });
      }
      return done(null, payload);
    },
  ),
);

function challenge(res, error, description) {
  let value = 'Bearer realm="notes"';
  if (error) value += `, error="${error}", error_description="${description}"`;
  res.set('WWW-Authenticate', value);
}

function authenticate(req, res, next) {
  passport.authenticate('jwt', { session: false }, (err, claims, info) => {
    if (err) return next(err); // the verify callback threw: a bug, 500
    if (info instanceof KeysUnavailable) {
      // passport-jwt hands a key provider's error to fail(), so it arrives here as info.
      console.error('JWKS unavailable:', info.message);
      res.set('Retry-After', '30');
      return res.status(503).json({
        error: 'temporarily_unavailable',
        error_description: 'the keys to check the token cannot be fetched; try again',
      });
    }
    if (!claims) {
      const sent = Boolean(req.get('authorization'));
      if (sent) challenge(res, 'invalid_token', 'the access token is invalid or expired');
      else challenge(res);
      if (process.env.DEBUG_CONSUMER) console.error('refused:', info && (info.message || info));
      return res.status(401).json({ error: sent ? 'invalid_token' : 'unauthorized' });
    }
    req.claims = claims;
    return next();
  })(req, res, next);
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
app.use(passport.initialize());

app.get('/healthz', (req, res) => res.json({ status: 'ok' }));

app.get('/notes', authenticate, requireScope(requiredScope), (req, res) => {
  res.json({ sub: req.claims.sub, notes: [`a note for ${req.claims.sub}`] });
});

app.listen(port, '127.0.0.1', () => {
  console.log(`express-passport-jwt listening on 127.0.0.1:${port}, trusting ${issuer} (${algorithms.join(',')})`);
});
