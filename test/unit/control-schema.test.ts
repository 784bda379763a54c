/**
 * Control requests (the mount's `.marufs` file) validated by their schema: every op accepts its
 * fields, drops unknown ones, defaults the names.put offset, and refuses bad input with EINVAL
 * naming each bad field.
 */
import { MarufsError } from '../../src/engine/index.js';
import { CONTROL_OPS, parseControlRequest } from '../../src/node-plugin/control.js';

function einval(json: unknown): string {
  try {
    parseControlRequest(json);
  } catch (e) {
    expect(e).toBeInstanceOf(MarufsError);
    expect((e as MarufsError).code).toBe('EINVAL');
    return (e as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(json)}`);
}

describe('parseControlRequest', () => {
  it('knows every op', () => {
    expect(CONTROL_OPS).toEqual([
      'stat',
      'whoami',
      'grant',
      'revoke',
      'default',
      'chown',
      'names.init',
      'names.put',
      'names.get',
      'names.rm',
      'names.ls',
      'names.ref',
      'names.pin',
      'names.stat',
    ]);
  });

  it('accepts valid requests, keeps only their fields and defaults the offset', () => {
    expect(parseControlRequest({ op: 'grant', region: 'kv', principal: 'user:1', perms: 'rw', junk: 1 })).toEqual({
      op: 'grant',
      region: 'kv',
      principal: 'user:1',
      perms: 'rw',
    });
    expect(parseControlRequest({ op: 'whoami' })).toEqual({ op: 'whoami' });
    expect(parseControlRequest({ op: 'default', region: 'kv', perms: '' })).toEqual({
      op: 'default',
      region: 'kv',
      perms: '',
    });
    expect(parseControlRequest({ op: 'names.put', table: 't', key: 'k', region: 'r' })).toEqual({
      op: 'names.put',
      table: 't',
      key: 'k',
      region: 'r',
      offset: 0,
    });
    expect(
      parseControlRequest({ op: 'names.init', table: 't', entries: 1024, shards: 4, buckets: 256, strategy: 'order' }),
    ).toEqual({ op: 'names.init', table: 't', entries: 1024, shards: 4, buckets: 256, strategy: 'order' });
    expect(parseControlRequest({ op: 'chown', region: 'kv', lifetime: 'persistent' })).toEqual({
      op: 'chown',
      region: 'kv',
      lifetime: 'persistent',
    });
  });

  it('refuses bad input with EINVAL naming every bad field', () => {
    expect(einval(null)).toBe('control request must be a JSON object with an "op"');
    expect(einval([])).toBe('control request must be a JSON object with an "op"');
    expect(einval({ op: 'format' })).toMatch(/^unknown control op "format"; one of stat, whoami, grant/);
    expect(einval({ region: 'kv' })).toMatch(/^unknown control op undefined/);
    const grant = einval({ op: 'grant', region: '', perms: 3 });
    expect(grant).toMatch(/^control request: /);
    expect(grant).toMatch(/"principal": required/);
    expect(grant).toMatch(/"region": must NOT have fewer than 1 characters/);
    expect(grant).toMatch(/"perms": must be of type string/);
    expect(einval({ op: 'names.ref', table: 't', key: 'k', direction: 'up' })).toBe(
      'control request: "direction": must be one of "inc", "dec"',
    );
    expect(einval({ op: 'chown', region: 'kv', lifetime: 'forever' })).toBe(
      'control request: "lifetime": must be one of "process", "persistent"',
    );
    expect(einval({ op: 'names.init', table: 't', entries: -1 })).toBe('control request: "entries": must be >= 0');
    expect(einval({ op: 'names.put', table: 't', key: 'k', region: 'r', offset: 1.5 })).toBe(
      'control request: "offset": must be of type integer',
    );
    expect(einval({ op: 'names.put', table: 't', key: 'k', region: 'r', offset: 2 ** 60 })).toMatch(
      /"offset": must be <= 9007199254740991/,
    );
  });
});
