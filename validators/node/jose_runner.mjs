// panva/jose runner: createRemoteJWKSet fetches the harness's JWKS, jwtVerify judges each token.
import * as jose from 'jose';
import { config, packageVersion, serve } from './protocol.mjs';

const { url, issuer, audience, algorithms } = config();
// cacheMaxAge 1 s so the retired key drops out quickly; cooldownDuration 0 so a kid miss refetches at
// once (the default 30 s cooldown would reject the rotation's new key: see README).
const jwks = jose.createRemoteJWKSet(new URL(url), { cacheMaxAge: 1000, cooldownDuration: 0 });
const verify = (token) => jose.jwtVerify(token, jwks, { issuer, audience, algorithms, requiredClaims: ['exp'] });
// How jose's errors are usually logged: the stable code, then the message.
const logged = (err) => (err?.code ? `${err.code}: ${err.message}` : `${err?.name}: ${err?.message}`);
await serve({ library: 'jose', version: packageVersion('jose') }, verify, logged);
