/**
 * Docker's image reference grammar, so a name Docker would refuse (`a b c`, `Ubuntu`, 100 KB of
 * text) is a located error when the workflow is loaded, not an internal error from the engine.
 *
 * The grammar is distribution/reference's (reference.go and regexp.go, the package Docker parses
 * references with):
 *
 *     reference       := name [ ":" tag ] [ "@" digest ]
 *     name            := [domain '/'] remote-name        (at most 255 characters)
 *     domain          := host [':' port-number]
 *     host            := domain-name | '[' IPv6 ']'
 *     domain-name     := domain-component ['.' domain-component]*
 *     domain-component:= /([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])/
 *     remote-name     := path-component ['/' path-component]*
 *     path-component  := /[a-z0-9]+/ [separator /[a-z0-9]+/]*
 *     separator       := /[_.]|__|[-]+/
 *     tag             := /[\w][\w.-]{0,127}/
 *     digest          := algorithm ':' /[0-9a-fA-F]{32,}/
 *
 * No npm package was a fit: the maintained ones either pull in a native regex engine or use the
 * older `[-]*` separator, whose nested quantifiers backtrack exponentially on a long invalid name.
 * Here the length is checked before any pattern runs, and the patterns have no ambiguous repetition.
 */
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const HOST = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])`;
const DOMAIN = `${HOST}(?::[0-9]+)?`;
const NAME = `(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`;
const TAG = '[\\w][\\w.-]{0,127}';
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const REFERENCE = new RegExp(`^(${NAME})(?::(${TAG}))?(?:@(${DIGEST}))?$`);

export const NAME_TOTAL_LENGTH_MAX = 255;
/** Name, tag and a sha512 digest fit well within this; anything longer is refused before matching. */
const REFERENCE_LENGTH_MAX = 512;

/** Why `ref` is not an image reference Docker accepts, or undefined when it is one. */
export function imageReferenceProblem(ref: string): string | undefined {
  if (ref.trim() === '') return 'the image name is empty';
  if (ref.length > REFERENCE_LENGTH_MAX) return `the image name is ${ref.length} characters long; Docker allows ${NAME_TOTAL_LENGTH_MAX} for the name`;
  if (/\s/.test(ref)) return 'an image name cannot contain spaces';
  const m = REFERENCE.exec(ref);
  if (!m) {
    // The commonest mistake gets its own words: Docker's "repository name must be lowercase".
    const path = ref.replace(/[@:].*$/, '');
    if (path !== path.toLowerCase() && REFERENCE.test(ref.replace(path, path.toLowerCase())))
      return 'an image name must be lower case (a registry host before the first `/` may not be)';
    return 'it is not a valid image reference (expected NAME[:TAG][@DIGEST], e.g. python:3.11-slim or ghcr.io/org/image:v1)';
  }
  if (m[1]!.length > NAME_TOTAL_LENGTH_MAX) return `the image name is longer than ${NAME_TOTAL_LENGTH_MAX} characters`;
  return undefined;
}
