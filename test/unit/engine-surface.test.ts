/**
 * Pins the engine's public surface: the CLI, node plugin, operator and SDK use only these names.
 * A change here is a change of the SDK's API and belongs in docs and the changelog.
 */
import * as engine from '../../src/engine/index.js';
import * as sdk from '../../src/index.js';

describe('engine public surface', () => {
  it('exports every engine name from the package root, plus the SDK facade', () => {
    expect(Object.keys(sdk).sort()).toEqual([...Object.keys(engine), 'NameTable', 'Pool', 'Region'].sort());
  });

  it('exports every error class with a fixed name and an errno code', () => {
    const errorClasses = Object.entries(engine).filter(([name]) => /^[A-Z]\w*Error$/.test(name));
    expect(errorClasses.map(([n]) => n)).toEqual(
      expect.arrayContaining([
        'DetachedError',
        'DeviceError',
        'FormatRefusedError',
        'GeometryError',
        'MarufsError',
        'NodeSlotBusyError',
        'PoolAccessError',
        'PoolChecksumError',
        'PoolDamagedError',
        'PoolNotFormattedError',
        'PoolVersionError',
        'TimeoutError',
      ]),
    );
    for (const [name, cls] of errorClasses) {
      const Ctor = cls as unknown as new (...args: unknown[]) => engine.MarufsError;
      const e = name === 'MarufsError' || name === 'DeviceError' ? new Ctor('EIO', 'x') : new Ctor('x');
      expect(e).toBeInstanceOf(engine.MarufsError);
      expect(e.name).toBe(name);
      expect(engine.Errno[e.code]).toBe(e.errno);
    }
  });

  it('keeps the main entry points', () => {
    for (const name of [
      'attachNode',
      'formatDevice',
      'inspectPool',
      'PoolMemory',
      'computeLayout',
      'resolveGeometry',
      'parsePerms',
      'parsePrincipal',
      'workloadPrincipal',
    ]) {
      expect(engine).toHaveProperty(name);
    }
  });
});
