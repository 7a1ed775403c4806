'use strict';
// Verify cost in Node: jsonwebtoken (what passport-jwt runs) and jose.
// Run by `.ci/consumers PORTCULLIS --bench`, which mints the tokens and sets NODE_PATH
// to the consumers' installed dependencies. Prints one JSON line per library and
// algorithm: the median, over `runs` runs, of microseconds per verification, the key
// already resolved (a KeyObject / CryptoKey): signature plus claims checks only.

const fs = require('fs');
const { createPublicKey } = require('crypto');
const jsonwebtoken = require('jsonwebtoken');
const jose = require('jose');

const JSONWEBTOKEN_ALGS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];
const TARGET_NS = 300e6; // each run lasts about 0.3 s

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function measure(verifyOnce, runs) {
  // Warm up, then pick n so that one run takes about TARGET_NS.
  let t0 = process.hrtime.bigint();
  let warm = 0;
  while (process.hrtime.bigint() - t0 < 50e6 || warm < 20) {
    await verifyOnce();
    warm += 1;
  }
  const per = Number(process.hrtime.bigint() - t0) / warm;
  const n = Math.max(100, Math.ceil(TARGET_NS / per));
  const results = [];
  for (let r = 0; r < runs; r += 1) {
    t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i += 1) await verifyOnce();
    results.push(Number(process.hrtime.bigint() - t0) / n / 1000);
  }
  return { n, runs_us: results.map((v) => Math.round(v * 10) / 10), median_us: median(results) };
}

async function main() {
  const spec = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const runs = spec.runs || 5;
  for (const [alg, t] of Object.entries(spec.tokens)) {
    if (JSONWEBTOKEN_ALGS.includes(alg)) {
      const key = createPublicKey({ key: t.jwk, format: 'jwk' });
      const options = { algorithms: [alg], issuer: t.issuer, audience: t.audience, complete: true };
      jsonwebtoken.verify(t.token, key, options); // throws if it does not verify
      const m = await measure(() => jsonwebtoken.verify(t.token, key, options), runs);
      console.log(JSON.stringify({ library: 'node jsonwebtoken', alg, ...m }));
    } else {
      console.log(JSON.stringify({ library: 'node jsonwebtoken', alg, unsupported: true }));
    }
    const key = await jose.importJWK(t.jwk, alg);
    const options = {
      algorithms: [alg],
      issuer: t.issuer,
      audience: t.audience,
      typ: 'at+jwt',
      requiredClaims: ['exp', 'iat', 'sub'],
    };
    await jose.jwtVerify(t.token, key, options);
    const m = await measure(() => jose.jwtVerify(t.token, key, options), runs);
    console.log(JSON.stringify({ library: 'node jose', alg, ...m }));
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
