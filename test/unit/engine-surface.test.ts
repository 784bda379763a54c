/**
 * Pins the package's public surface (src/index.ts: what `import … from 'marufs'` may use) and checks
 * the engine's error catalogue. A change to the package list is a change of the SDK's API and belongs
 * in docs/sdk.md; the engine surface (src/engine/index.ts) is what the CLI, node plugin and operator
 * use and may grow.
 */
import * as engine from '../../src/engine/index.js';
import * as pkg from '../../src/index.js';

/** The engine's error classes (the catalogue, src/engine/errors.ts). */
const ERROR_CLASSES = [
  'DetachedError',
  'DeviceError',
  'FencedError',
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
];

/** Every runtime name `marufs` exports (types are checked by tsc, not here). */
const PACKAGE_NAMES = [
  // the SDK facade
  'NameTable',
  'Pool',
  'Region',
  // errors
  'Errno',
  ...ERROR_CLASSES,
  // permissions and principals
  'Perm',
  'formatPerms',
  'parsePerms',
  'parsePrincipal',
  'principalText',
  'thisProcess',
  'workloadId',
  'workloadPrincipal',
  // the engine objects the facade hands out, and the documented entry points
  'MarufsNode',
  'NrhtTable',
  'RegionHandle',
  'attachNode',
  'checkPool',
  'formatDevice',
  'fsck',
  'inspectPool',
];

describe('package public surface', () => {
  it('exports exactly the pinned names', () => {
    expect(Object.keys(pkg).sort()).toEqual([...PACKAGE_NAMES].sort());
  });

  it('exports each name as the engine defines it', () => {
    for (const name of PACKAGE_NAMES) {
      if (name in engine)
        expect((pkg as Record<string, unknown>)[name]).toBe((engine as Record<string, unknown>)[name]);
    }
  });

  it('exports every error class of the engine', () => {
    const engineErrors = Object.keys(engine).filter((name) => /^[A-Z]\w*Error$/.test(name));
    expect(
      Object.keys(pkg)
        .filter((name) => /^[A-Z]\w*Error$/.test(name))
        .sort(),
    ).toEqual(engineErrors.sort());
  });
});

describe('engine error catalogue', () => {
  it('exports every error class with a fixed name and an errno code', () => {
    const errorClasses = Object.entries(engine).filter(([name]) => /^[A-Z]\w*Error$/.test(name));
    expect(errorClasses.map(([n]) => n).sort()).toEqual([...ERROR_CLASSES].sort());
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
