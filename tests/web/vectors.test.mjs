// The shared protocol vectors (tests/vectors/protocol/*.json) against the browser client's codec.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { test } from 'node:test';

import { ProtocolError, decode, encode } from '../../shell/web/codec.js';
import '../../shell/web/codec_peer.js';
import { describeMessage } from './describe.mjs';

const DIR = new URL('../vectors/protocol/', import.meta.url);
const files = readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();

test('there are vectors', () => assert.ok(files.length >= 3));

for (const f of files) {
  for (const c of JSON.parse(readFileSync(new URL(f, DIR), 'utf-8'))) {
    test(c.name, () => {
      const bytes = new TextEncoder().encode(c.wire);
      if ('error' in c) {
        assert.throws(() => decode(bytes), (e) => e instanceof ProtocolError && e.code === c.error);
        assert.throws(() => decode(c.wire), (e) => e instanceof ProtocolError && e.code === c.error);
        return;
      }
      const m = decode(bytes);
      assert.deepStrictEqual(describeMessage(m), c.value);
      assert.equal(encode(m), c.wire);
      assert.deepStrictEqual(describeMessage(decode(c.wire)), c.value);
    });
  }
}
