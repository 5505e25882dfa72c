// auth0 jsonwebtoken runner, with auth0 jwks-rsa fetching the harness's JWKS (jsonwebtoken fetches none itself).
import jwt from 'jsonwebtoken';
import jwksRsa from 'jwks-rsa';
import { config, packageVersion, serve } from './protocol.mjs';

const { url, issuer, audience, algorithms } = config();
// cacheMaxAge 1 s so the retired key drops out quickly; no rate limit so a kid miss refetches.
const client = jwksRsa({ jwksUri: url, cache: true, cacheMaxAge: 1000, rateLimit: false });
const getKey = (header, done) => {
  client.getSigningKey(header.kid, (err, key) => (err ? done(err) : done(null, key.getPublicKey())));
};
const verify = (token) => new Promise((resolve, reject) => {
  jwt.verify(token, getKey, { issuer, audience, algorithms, clockTolerance: 0 }, (err, payload) => (err ? reject(err) : resolve(payload)));
});
// err.toString(), as console.error and most loggers print an Error: "<name>: <message>".
const logged = (err) => `${err?.name}: ${err?.message}`;
await serve(
  { library: 'jsonwebtoken', version: packageVersion('jsonwebtoken'), helpers: { 'jwks-rsa': packageVersion('jwks-rsa') } },
  verify,
  logged,
);
