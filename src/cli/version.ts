export { VERSION } from '../engine/version.js';
