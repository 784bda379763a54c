/**
 * The marufs.io/v1alpha1 API: MarufsPool and MarufsRegion schemas (TypeScript types, runtime
 * validation, CRDs), shared names and constants. Everything the operator, the node agent, the
 * CRD generator and the docs need about the resources' shape comes from here.
 */
export * from './common.js';
export * from './pool.js';
export * from './region.js';
export * from './validate.js';
export * from './crd.js';
export * from './docs.js';
export * from './chart-values.js';
