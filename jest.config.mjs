// Tests are compiled by tsc (scripts/setup.mjs) and run as native ESM from dist/, so child
// processes, worker threads and the tests all run exactly the code users run.
export default {
  testEnvironment: 'node',
  roots: ['<rootDir>/dist/test'],
  testMatch: ['**/*.test.js'],
  transform: {},
  reporters: ['default', '<rootDir>/test/summary-reporter.cjs'],
  testTimeout: 120000,
  maxWorkers: 1,
};
