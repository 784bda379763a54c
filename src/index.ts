/** The `marufs` package: the engine's public surface (SDK). */
export * from './engine/index.js';
