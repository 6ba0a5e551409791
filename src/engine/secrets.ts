import { DstackError } from './errors.js';
import { SECRET_MARKER_RE } from './types.js';

/** Looks a secret up by name; undefined when it is not set. Values never go to the store or logs. */
export type SecretSource = (name: string) => string | undefined;

/** Replaces secret markers in `text` with their values; an unset secret is an error naming it. */
export function revealSecrets(text: string, secrets: SecretSource, where: string): string {
  return text.replace(SECRET_MARKER_RE, (_m, name: string) => {
    const value = secrets(name);
    if (value === undefined) {
      throw new DstackError('DS0016', `secret '${name}' used by ${where} is not set`, {
        hint: `add it with \`dstack secrets add ${name}\``,
      });
    }
    return value;
  });
}

/** Shows a marker the way the user wrote it, for records and messages. */
export const displaySecrets = (text: string): string => text.replace(SECRET_MARKER_RE, (_m, name: string) => `\${{ secrets.${name} }}`);

/**
 * Masks secret values in log output. Values shorter than 4 characters are not masked: they would
 * turn ordinary output into noise and mask nothing worth hiding.
 */
export function secretMasker(values: readonly string[]): (chunk: Buffer) => Buffer {
  const needles = [...new Set(values.filter((v) => v.length >= 4))].sort((a, b) => b.length - a.length);
  if (needles.length === 0) return (chunk) => chunk;
  return (chunk) => {
    let text = chunk.toString('utf8');
    let changed = false;
    for (const n of needles) {
      if (text.includes(n)) {
        text = text.split(n).join('***');
        changed = true;
      }
    }
    return changed ? Buffer.from(text, 'utf8') : chunk;
  };
}
