// The test generators themselves (JS and Python) against known values: Rails MessageVerifier
// signed names (AnyCable docs/signed_streams.md), HS256 JWTs with an `ext` claim (AnyCable
// docs/jwt_identification.md), the broadcast key derived from the secret (docs/broadcasting.md).
// No server needed.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { signStreamName, makeJwt, broadcastKey, tamperSignedName } from './support/signing.mjs';

const py = path.join(path.dirname(fileURLToPath(import.meta.url)), 'support', 'sign.py');
const python = (...args) => execFileSync('python3', [py, ...args], { encoding: 'utf8' }).trim();

const EXAMPLE_A = 'ImNoYXQvMjAyMyI=--2b2e054b6413bf3bc7e8bbad2f68962aa2ba19821800ccbd8de6fd7314e8320c';
const EXAMPLE_B = 'ImdpZDovL2FwcC9Sb29tLzQyOm1lc3NhZ2VzIg==--dc8ca4371f7d6017d3b78cb419b781f9136b9e8f331b0fd063031e18cfc3983f';
const JWT_VALID = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHQiOiJ7XCJ1c2VyX2lkXCI6NDJ9IiwiZXhwIjoxODkzNDU2MDAwfQ.iJpWkeL_m0xrwXgEMVMrvB-pWeAyz7U-RovpEicU5w4';
const JWT_EXPIRED = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHQiOiJ7XCJ1c2VyX2lkXCI6NDJ9IiwiZXhwIjoxNzAwMDAwMDAwfQ.zM_bz_v6718Hw3c5lbxLv9KGfMsRsJ6Z36DfqLGqJng';
const KEY_S3CR3T = '83149057b2f956b5f862c0ef5ad6a24d3677dc076d77e8999c24f77ca17d7a20';

describe('signing helpers match known values', () => {
  it('JS signed stream names (MessageVerifier examples A and B)', () => {
    assert.equal(signStreamName('chat/2023', 's3Krit'), EXAMPLE_A);
    assert.equal(signStreamName('gid://app/Room/42:messages', 'my-turbo-secret'), EXAMPLE_B);
  });

  it('Python signed stream names (MessageVerifier examples A and B)', () => {
    assert.equal(python('stream', 's3Krit', 'chat/2023'), EXAMPLE_A);
    assert.equal(python('stream', 'my-turbo-secret', 'gid://app/Room/42:messages'), EXAMPLE_B);
  });

  it('JS JWTs (valid and expired tokens)', () => {
    assert.equal(makeJwt({ user_id: 42 }, 'qwerty', { exp: 1893456000 }), JWT_VALID);
    assert.equal(makeJwt({ user_id: 42 }, 'qwerty', { exp: 1700000000 }), JWT_EXPIRED);
    assert.notEqual(makeJwt({ user_id: 42 }, 'other', { exp: 1893456000 }), JWT_VALID);
  });

  it('Python JWTs (valid and expired tokens)', () => {
    assert.equal(python('jwt', 'qwerty', '{"user_id":42}', '--exp', '1893456000', '--compact-ext'), JWT_VALID);
    assert.equal(python('jwt', 'qwerty', '{"user_id":42}', '--exp', '1700000000', '--compact-ext'), JWT_EXPIRED);
    // docs-style ext keeps Python's default separators: {"user_id": 42}
    const docsStyle = python('jwt', 'qwerty', '{"user_id":42}', '--exp', '1893456000');
    const payload = JSON.parse(Buffer.from(docsStyle.split('.')[1], 'base64url').toString('utf8'));
    assert.deepEqual(payload, { ext: '{"user_id": 42}', exp: 1893456000 });
    assert.equal(docsStyle, makeJwt(null, 'qwerty', { ext: '{"user_id": 42}', exp: 1893456000 }));
  });

  it('broadcast key derived from the secret s3cr3t', () => {
    assert.equal(broadcastKey('s3cr3t'), KEY_S3CR3T);
    assert.equal(python('broadcast-key', 's3cr3t'), KEY_S3CR3T);
  });

  it('tampering changes exactly one digest character', () => {
    const t = tamperSignedName(EXAMPLE_A);
    assert.equal(t.length, EXAMPLE_A.length);
    assert.notEqual(t, EXAMPLE_A);
    assert.equal(t.split('--')[0], EXAMPLE_A.split('--')[0]);
  });
});
