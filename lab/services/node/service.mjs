// The lab's Node.js resource server: jose's jwtVerify with createRemoteJWKSet and its default caching
// (cacheMaxAge 10 min, cooldownDuration 30 s). GET /api wants a Bearer token; each rejection is one
// AuthFailureEvent JSON line (reported_error as jose errors are usually logged: `${code}: ${message}`),
// and a SampledToken line when the token's hash falls under the sampling rate. GET /fetches lists when
// the JWKS was fetched (the customFetch hook only notes the time). Configured by environment.
import { createHash, randomUUID } from 'node:crypto';
import { appendFileSync, readFileSync } from 'node:fs';
import http from 'node:http';
import * as jose from 'jose';

const env = process.env;
const fetches = [];
const now = () => new Date().toISOString();
const recordingFetch = async (url, options) => {
  const response = await fetch(url, options);
  fetches.push(now());
  return response;
};
const jwks = jose.createRemoteJWKSet(new URL(env.LAB_JWKS_URL), { [jose.customFetch]: recordingFetch });
const verify = (token) => jose.jwtVerify(token, jwks, {
  issuer: env.LAB_ISSUER, audience: env.LAB_AUDIENCE, algorithms: ['RS256'], requiredClaims: ['exp'],
});
const logged = (err) => (err?.code ? `${err.code}: ${err.message}` : `${err?.name}: ${err?.message}`);
const version = JSON.parse(readFileSync(new URL('./node_modules/jose/package.json', import.meta.url))).version;

function logRejection(token, message, headers) {
  const digest = createHash('sha256').update(token, 'latin1').digest('hex');
  const ts = now();
  const event = {
    event_id: randomUUID(), ts, service: env.LAB_SERVICE, reported_error: message,
    service_jwks_fetched_at: fetches.length ? fetches[fetches.length - 1] : null,
    client_id: headers['x-client-id'] ?? null, request_id: headers['x-request-id'] ?? null, token_sha256: digest,
  };
  appendFileSync(env.LAB_EVENTS, JSON.stringify(event) + '\n');
  if (parseInt(digest.slice(0, 2), 16) < Number(env.LAB_SAMPLE_BELOW)) {
    appendFileSync(env.LAB_SAMPLES, JSON.stringify({ token, sampled_at: ts, service: env.LAB_SERVICE }) + '\n');
  }
}

function reply(res, status, body) {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
}

http.createServer(async (req, res) => {
  if (req.url === '/health') return reply(res, 200, { library: 'jose', version });
  if (req.url === '/fetches') return reply(res, 200, fetches);
  const token = (req.headers.authorization ?? '').replace(/^Bearer /, '');
  try {
    await verify(token);
    return reply(res, 200, { ok: true });
  } catch (err) {
    logRejection(token, logged(err), req.headers);
    return reply(res, 401, { error: 'invalid_token' });
  }
}).listen(Number(env.LAB_PORT), '127.0.0.1');
