// Replaced at build time by esbuild's `define`; the fallback serves tests that run the sources.
declare const __DSTACK_VERSION__: string | undefined;
export const VERSION: string = typeof __DSTACK_VERSION__ === 'string' ? __DSTACK_VERSION__ : '0.0.0-dev';
