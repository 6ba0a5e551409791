/** The workflow model: loading the files, templates, sizes and run arguments. */
export { findProjectRoot, loadProject } from './load.js';
export { parseSize, SIZE_HINT } from './units.js';
export { interpolate, type InterpolationScope, type TemplateOrigin } from './interpolate.js';
export { parseRunArgs, declaredVariables } from './args.js';
export { splitShellWords, shellQuote } from './shell.js';
