// Signed stream names (Rails MessageVerifier format) and HS256 JWTs for AnyCable.
// Mirrors the snippets of AnyCable's docs/signed_streams.md and docs/jwt_identification.md.
// Node's crypto only, no JWT library.
import { createHmac } from 'node:crypto';

/** Base64 (standard alphabet, padded) of the JSON-encoded name + "--" + hex HMAC-SHA256. */
export function signStreamName(name, secret) {
  const encoded = Buffer.from(JSON.stringify(name), 'utf8').toString('base64');
  const digest = createHmac('sha256', secret).update(encoded).digest('hex');
  return `${encoded}--${digest}`;
}

/** A signed name whose digest was altered (same length, one hex digit changed). */
export function tamperSignedName(signed) {
  const last = signed.at(-1);
  return signed.slice(0, -1) + (last === '0' ? '1' : '0');
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

/**
 * HS256 JWT with payload {ext: JSON.stringify(identifiers), exp}.
 * `exp` is absolute (Unix seconds); default: now + 300. Pass `exp: null` to omit it.
 * `ext` may be given as a ready string to control its exact bytes.
 */
export function makeJwt(identifiers, secret, { exp, ext, extraClaims = {} } = {}) {
  const header = { alg: 'HS256', typ: 'JWT' };
  const payload = { ext: ext ?? JSON.stringify(identifiers) };
  const expValue = exp === undefined ? Math.floor(Date.now() / 1000) + 300 : exp;
  if (expValue !== null) payload.exp = expValue;
  Object.assign(payload, extraClaims);
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const signature = createHmac('sha256', secret).update(signingInput).digest('base64url');
  return `${signingInput}.${signature}`;
}

/** The HTTP broadcast key AnyCable derives from --secret: hex HMAC-SHA256(key=secret, "broadcast-cable"). */
export function broadcastKey(secret) {
  return createHmac('sha256', secret).update('broadcast-cable').digest('hex');
}
