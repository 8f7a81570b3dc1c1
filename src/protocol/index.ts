export * from './errors.js';
export * from './limits.js';
export * from './ops.js';
export { validateOp, parseBucketBound } from './validate.js';
export { mergeState, deepEqual, type StateObject } from './merge.js';
export { checkValue, isPlainObject } from './values.js';
